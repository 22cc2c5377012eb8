// BLAKE3 chunk chaining values and parent levels, one thread per node.
//
// Compiled at run time by NVRTC (CuPy's RawModule), so it includes no headers.
// The same source also compiles as plain C++ (no __CUDACC__): the per-node
// functions are then ordinary functions, and b3_*_host loops stand in for the
// kernels, so the CPU tests run this very code against the Python reference.
//
// Layout shared with cuda.py (see _tree.py for the schedule):
//   runs:  n_runs rows of 4 u64 {pointer, first_chunk, count, alignment},
//          sorted by first_chunk, covering chunks [0, n_chunks) exactly; the
//          chunks of a row lie at pointer + k * 1024, alignment is 16, 4 or 1.
//   cvs:   8 little-endian u32 words per node.

typedef unsigned int u32;
typedef unsigned long long u64;
typedef unsigned char u8;

#if defined(__CUDACC__)
#define B3_FN __device__ __forceinline__
#else
#define B3_FN static inline
#endif

#define B3_CHUNK_LEN 1024ULL
#define B3_BLOCK_LEN 64u
#define B3_CHUNK_START 1u
#define B3_CHUNK_END 2u
#define B3_PARENT 4u

#if defined(__CUDACC__)
__constant__ u32 B3_IV[8] = {
#else
static const u32 B3_IV[8] = {
#endif
    0x6A09E667u, 0xBB67AE85u, 0x3C6EF372u, 0xA54FF53Au,
    0x510E527Fu, 0x9B05688Cu, 0x1F83D9ABu, 0x5BE0CD19u};

B3_FN u32 b3_rotr(u32 x, u32 n) {
#if defined(__CUDA_ARCH__)
    return __funnelshift_r(x, x, n);
#else
    return (x >> n) | (x << (32u - n));
#endif
}

#define B3_G(a, b, c, d, x, y)          \
    do {                                \
        a = a + b + (x);                \
        d = b3_rotr(d ^ a, 16);         \
        c = c + d;                      \
        b = b3_rotr(b ^ c, 12);         \
        a = a + b + (y);                \
        d = b3_rotr(d ^ a, 8);          \
        c = c + d;                      \
        b = b3_rotr(b ^ c, 7);          \
    } while (0)

B3_FN void b3_round(u32 s[16], const u32 m[16]) {
    B3_G(s[0], s[4], s[8], s[12], m[0], m[1]);
    B3_G(s[1], s[5], s[9], s[13], m[2], m[3]);
    B3_G(s[2], s[6], s[10], s[14], m[4], m[5]);
    B3_G(s[3], s[7], s[11], s[15], m[6], m[7]);
    B3_G(s[0], s[5], s[10], s[15], m[8], m[9]);
    B3_G(s[1], s[6], s[11], s[12], m[10], m[11]);
    B3_G(s[2], s[7], s[8], s[13], m[12], m[13]);
    B3_G(s[3], s[4], s[9], s[14], m[14], m[15]);
}

// The message permutation (2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8).
B3_FN void b3_permute(u32 m[16]) {
    u32 t[16];
    t[0] = m[2]; t[1] = m[6]; t[2] = m[3]; t[3] = m[10];
    t[4] = m[7]; t[5] = m[0]; t[6] = m[4]; t[7] = m[13];
    t[8] = m[1]; t[9] = m[11]; t[10] = m[12]; t[11] = m[5];
    t[12] = m[9]; t[13] = m[14]; t[14] = m[15]; t[15] = m[8];
#if defined(__CUDACC__)
#pragma unroll
#endif
    for (int i = 0; i < 16; i++) m[i] = t[i];
}

// Compresses one block into cv (the chaining value only: no root output here).
B3_FN void b3_compress(u32 cv[8], u32 m[16], u64 counter, u32 block_len, u32 flags) {
    u32 s[16] = {cv[0], cv[1], cv[2], cv[3], cv[4], cv[5], cv[6], cv[7],
                 B3_IV[0], B3_IV[1], B3_IV[2], B3_IV[3],
                 (u32)counter, (u32)(counter >> 32), block_len, flags};
#if defined(__CUDACC__)
#pragma unroll
#endif
    for (int r = 0; r < 7; r++) {
        b3_round(s, m);
        if (r < 6) b3_permute(m);
    }
#if defined(__CUDACC__)
#pragma unroll
#endif
    for (int i = 0; i < 8; i++) cv[i] = s[i] ^ s[i + 8];
}

B3_FN u32 b3_load_bytes(const u8* p, u32 n) {
    // Little-endian word of the first n (0..4) bytes at p, zero padded.
    u32 w = 0;
    for (u32 i = 0; i < n; i++) w |= (u32)p[i] << (8 * i);
    return w;
}

// Loads block bytes [0, len) at p into m, zero padded; align is p's alignment.
B3_FN void b3_load_block(u32 m[16], const u8* p, u32 len, u32 align) {
    if (len == B3_BLOCK_LEN && align >= 16) {
#if defined(__CUDA_ARCH__)
        const uint4* q = (const uint4*)p;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            uint4 v = q[i];
            m[4 * i] = v.x; m[4 * i + 1] = v.y; m[4 * i + 2] = v.z; m[4 * i + 3] = v.w;
        }
        return;
#endif
    }
    if (len == B3_BLOCK_LEN && align >= 4) {
#if defined(__CUDA_ARCH__)
        const u32* q = (const u32*)p;
#pragma unroll
        for (int i = 0; i < 16; i++) m[i] = q[i];
        return;
#endif
    }
    for (u32 i = 0; i < 16; i++) {
        u32 start = 4 * i;
        u32 take = start >= len ? 0 : (len - start < 4 ? len - start : 4);
        m[i] = b3_load_bytes(p + start, take);
    }
}

// The CV of one chunk (never the root: the host hashes one-chunk messages).
B3_FN void b3_chunk_cv(const u8* chunk, u32 len, u64 counter, u32 align, u32 cv[8]) {
    for (int i = 0; i < 8; i++) cv[i] = B3_IV[i];
    u32 blocks = len == 0 ? 1 : (len + B3_BLOCK_LEN - 1) / B3_BLOCK_LEN;
    u32 m[16];
    for (u32 b = 0; b < blocks; b++) {
        u32 at = b * B3_BLOCK_LEN;
        u32 block_len = len - at < B3_BLOCK_LEN ? len - at : B3_BLOCK_LEN;
        b3_load_block(m, chunk + at, block_len, align);
        u32 flags = (b == 0 ? B3_CHUNK_START : 0u) | (b == blocks - 1 ? B3_CHUNK_END : 0u);
        b3_compress(cv, m, counter, block_len, flags);
    }
}

// Chunk `chunk` of the message: find its run, hash it, store its CV.
B3_FN void b3_chunk_node(const u64* runs, u32 n_runs, u64 total_len, u64 chunk, u32* cvs) {
    u32 lo = 0, hi = n_runs;  // last row whose first_chunk <= chunk
    while (hi - lo > 1) {
        u32 mid = (lo + hi) / 2;
        if (runs[4 * mid + 1] <= chunk) lo = mid; else hi = mid;
    }
    const u64* row = runs + 4 * lo;
    const u8* src = (const u8*)(row[0] + (chunk - row[1]) * B3_CHUNK_LEN);
    u64 left = total_len - chunk * B3_CHUNK_LEN;
    u32 len = left < B3_CHUNK_LEN ? (u32)left : (u32)B3_CHUNK_LEN;
    u32 cv[8];
    b3_chunk_cv(src, len, chunk, (u32)row[3], cv);
    for (int i = 0; i < 8; i++) cvs[8 * chunk + i] = cv[i];
}

// Node `i` of the level above `in` (n_in nodes): a parent, or the odd last node carried up.
B3_FN void b3_parent_node(const u32* in, u64 n_in, u64 i, u32* out) {
    u32 cv[8];
    if (2 * i + 1 < n_in) {
        u32 m[16];
        for (int k = 0; k < 16; k++) m[k] = in[16 * i + k];
        for (int k = 0; k < 8; k++) cv[k] = B3_IV[k];
        b3_compress(cv, m, 0, B3_BLOCK_LEN, B3_PARENT);
    } else {
        for (int k = 0; k < 8; k++) cv[k] = in[16 * i + k];
    }
    for (int k = 0; k < 8; k++) out[8 * i + k] = cv[k];
}

#if defined(__CUDACC__)
extern "C" __global__ void b3_chunk_cvs(const u64* runs, u32 n_runs, u64 total_len,
                                        u64 n_chunks, u32* cvs) {
    u64 chunk = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (chunk < n_chunks) b3_chunk_node(runs, n_runs, total_len, chunk, cvs);
}

// One segment of a file streamed through the GPU: `count` chunks at `src`
// (16-byte aligned), chunk counters from `first_chunk`, CVs into `cvs`.
extern "C" __global__ void b3_segment_cvs(const u8* src, u64 first_chunk, u64 count,
                                          u64 total_len, u32* cvs) {
    u64 k = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= count) return;
    u64 chunk = first_chunk + k;
    u64 left = total_len - chunk * B3_CHUNK_LEN;
    u32 len = left < B3_CHUNK_LEN ? (u32)left : (u32)B3_CHUNK_LEN;
    u32 cv[8];
    b3_chunk_cv(src + k * B3_CHUNK_LEN, len, chunk, 16, cv);
    for (int i = 0; i < 8; i++) cvs[8 * chunk + i] = cv[i];
}

extern "C" __global__ void b3_parents(const u32* in, u64 n_in, u32* out) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (n_in + 1) / 2) b3_parent_node(in, n_in, i, out);
}
#else
extern "C" void b3_chunk_cvs_host(const u64* runs, u32 n_runs, u64 total_len, u64 n_chunks,
                                  u32* cvs) {
    for (u64 chunk = 0; chunk < n_chunks; chunk++)
        b3_chunk_node(runs, n_runs, total_len, chunk, cvs);
}

extern "C" void b3_parents_host(const u32* in, u64 n_in, u32* out) {
    for (u64 i = 0; i < (n_in + 1) / 2; i++) b3_parent_node(in, n_in, i, out);
}
#endif
