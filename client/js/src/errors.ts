// Errors: every failure of this client is a RefstoreError whose `code` is one of the schema's
// ErrorCode names ("NOT_FOUND", ...). The daemon writes "refstore.<NAME>: <explanation>" into its
// exceptions; capnp-es prefixes remote exceptions with its own words ("CAPNP-TS116 RPC method
// failed at refstore.capnp:Store.restore(): "), so the code word is searched for, not assumed to
// start the text (as the schema's ErrorCode comment asks).
import { ErrorCode } from "../gen/refstore.js";

export type ErrorCodeName = keyof typeof ErrorCode;

export class RefstoreError extends Error {
  /** The schema's ErrorCode name, e.g. "NOT_FOUND". */
  readonly code: ErrorCodeName;
  /** The schema's ErrorCode number (stable, as in the C and C++ clients). */
  readonly codeNumber: number;

  constructor(code: ErrorCodeName, message: string) {
    super(message.startsWith("refstore.") ? message : `refstore.${code}: ${message}`);
    this.name = "RefstoreError";
    this.code = code;
    this.codeNumber = ErrorCode[code];
  }
}

const CODE_WORD = /refstore\.([A-Z_]+):/;

function isCodeName(word: string): word is ErrorCodeName {
  return Object.prototype.hasOwnProperty.call(ErrorCode, word);
}

/**
 * The RefstoreError for whatever a call threw: the daemon's code word when the text has one,
 * DISCONNECTED for a lost connection, else INTERNAL with the original text. `where` names the
 * call ("Store.restore") for failures that do not say it themselves.
 */
export function toRefstoreError(error: unknown, where: string): RefstoreError {
  if (error instanceof RefstoreError) return error;
  const text = error instanceof Error ? error.message : String(error);
  const match = CODE_WORD.exec(text);
  if (match && isCodeName(match[1])) {
    return new RefstoreError(match[1], `${text.slice(match.index)} (${where})`);
  }
  if (text.includes("CAPNP-TS106")) {
    // capnp-es refuses calls on an import this client released (see release.ts).
    return new RefstoreError("FAILED_PRECONDITION", `this capability was released (${where})`);
  }
  return new RefstoreError("INTERNAL", `${where}: ${text}`);
}

/** Runs an RPC and turns any failure into a RefstoreError. */
export async function rpc<T>(where: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    throw toRefstoreError(error, where);
  }
}
