// Include last, after every other header, in a *_avx2.cpp file: the functions that follow are
// compiled for AVX2+FMA+F16C. Headers included earlier keep the baseline ISA, so their inline
// functions are never emitted with AVX2 code that the linker could share with baseline callers.
// Pair with avx2_end.h at the end of the file. (No include guard: this is a region marker.)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif
