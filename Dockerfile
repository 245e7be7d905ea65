# genrec's HTTP API and web page over a run folder, on CPU.
#
#   docker build -t genrec-serve .
#   docker run -p 8000:8000 -v "$PWD/runs/demo:/runs/demo" genrec-serve
#
# The run folder is made outside the image (`make demo`, or the pipeline commands) and mounted at
# /runs/demo. Another folder or other retrievers: give the whole command after the image name,
#   docker run -p 8000:8000 -v "$PWD/runs/mine:/runs/mine" genrec-serve genrec serve /runs/mine --host 0.0.0.0 --retrievers generative,bm25
# Set GENREC_ADMIN_TOKEN (`-e GENREC_ADMIN_TOKEN=...`) to allow POST /admin/reload.
FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    OMP_NUM_THREADS=2

WORKDIR /opt/genrec
COPY pyproject.toml README.md LICENSE constraints.txt ./
COPY src ./src
# constraints.txt pins every version the project is tested with, torch as its CPU build
# (2.13.0+cpu, from PyTorch's CPU index): nothing pulls in a multi-GB CUDA build.
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu -c constraints.txt ".[serve,offline]" \
    && useradd --create-home --uid 10001 genrec

USER genrec
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["genrec", "serve", "/runs/demo", "--host", "0.0.0.0", "--port", "8000", "--retrievers", "bm25"]
