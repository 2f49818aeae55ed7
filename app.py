"""The web chat on the configured corpus (default: corpus/). Same as `rag serve`.

    python app.py            # http://127.0.0.1:7860; RAG_HOST / RAG_PORT change it
"""

import logging
import sys

from rag.settings import Settings
from rag.web import serve

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    sys.exit(serve(Settings()))
