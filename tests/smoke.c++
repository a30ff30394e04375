#include <kj/string.h>
int main() { return kj::str("a", 1) == "a1" ? 0 : 1; }
