package kfast

// The program is compiled with Debian's clang-14 (`make generate`) into
// relay_bpfel.o and relay_bpfeb.o, which are committed with the Go files
// bpf2go writes beside them, so that building the package needs no C
// compiler. The flags are fixed so that the output does not depend on the
// machine: bpf2go maps the source directory away (-fdebug-prefix-map) and
// strips DWARF; the two include directories hold the same asm/types.h for
// BPF's purposes, and clang skips the one that does not exist.
//
//go:generate go tool bpf2go -cc clang-14 -strip llvm-strip-14 -cflags "-O2 -mcpu=v3 -Wall -Werror -idirafter /usr/include/x86_64-linux-gnu -idirafter /usr/include/aarch64-linux-gnu" -type c2p_key -type c2p_val -type p2c_key -type p2c_val -type counters relay bpf/relay.c
