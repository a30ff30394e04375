// xxHash at the speed of this CPU's widest vectors. Debian's libxxhash is built for baseline
// x86-64, and its plain XXH3 entry points hash at 1.3-2.7 GB/s on this machine (measured with
// 4 MiB buffers), slower than copying the bytes through a socket. The same library exports
// runtime-dispatching variants that pick AVX2 or AVX-512 when the CPU has them (20-48 GB/s);
// xxh_x86dispatch.h renames every XXH3 call to them. Include this instead of <xxhash.h>.
#pragma once

#include <xxhash.h>

#if defined(__x86_64__)
#include <xxh_x86dispatch.h>
#endif
