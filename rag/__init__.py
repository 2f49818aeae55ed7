"""rag: ask your documents (see README.md)."""

import os

# numpy's OpenBLAS starts one busy-waiting thread per core for every matrix product. The numpy query encoder
# multiplies small matrices, often from several request threads at once: threaded BLAS there measured 10 ms
# -> 436 ms per question on the 2 shared cores. One thread per call; export OPENBLAS_NUM_THREADS to override.
# (Set before numpy is first imported, which is why it is here; torch and faiss use their own thread pools.)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
