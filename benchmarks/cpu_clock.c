/* The core clock, measured: 128 dependent 1-cycle integer adds per iteration, so iterations x 128 / seconds
   is the clock in Hz whatever the reported frequency (benchmarks/inference.py compiles and runs it, one copy
   per thread at once, to read the clock under an all-core load). */
#include <stdio.h>
#include <time.h>
#define A8 "add $1, %0\n\t" "add $1, %0\n\t" "add $1, %0\n\t" "add $1, %0\n\t" "add $1, %0\n\t" "add $1, %0\n\t" "add $1, %0\n\t" "add $1, %0\n\t"
#define A64 A8 A8 A8 A8 A8 A8 A8 A8
int main(void) {
    unsigned long x = 0, n = 20000000UL;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (unsigned long i = 0; i < n; i++) __asm__ volatile(A64 A64 : "+r"(x));
    clock_gettime(CLOCK_MONOTONIC, &b);
    double s = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) * 1e-9;
    printf("%.3f\n", x / s / 1e9);
    return 0;
}
