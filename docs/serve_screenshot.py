"""Regenerate `docs/serve.png`: the web page of `genrec serve`, in headless Chromium.

    .venv/bin/genrec data synth --out runs/serve-demo/data      # the default world
    .venv/bin/python docs/serve_screenshot.py --run runs/serve-demo --retrievers generative,bm25 \\
        --query "leather wallet" --user 2

Starts the server on a free loopback port, opens the page with the two
retrievers side by side for the same request, and saves the screenshot.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from loopback_server import stop, wait_until_healthy  # noqa: E402, I001  (the benchmarks wait alike)


FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--force-device-scale-factor=1")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--retrievers", default="generative,bm25", help="two names: shown side by side")
    parser.add_argument("--query", default="leather wallet")
    parser.add_argument("--user", default="2")
    parser.add_argument("--k", default="10")
    parser.add_argument("--size", default="1440,1180", help="window width,height in pixels")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "serve.png")
    args = parser.parse_args()

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "genrec.cli", "serve", str(args.run), "--port", str(port),
                               "--retrievers", args.retrievers])
    profile = tempfile.mkdtemp(prefix="genrec-shot-")
    try:
        try:
            wait_until_healthy(server, url, lambda: "see its output above", seconds=900)
        except RuntimeError as error:
            print(f"the server did not come up: {error}", file=sys.stderr)
            return 1
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--window-size={args.size}")
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        try:
            names = args.retrievers.split(",")
            params = {"q": args.query, "user_id": args.user, "retriever": names[0], "k": args.k}
            if len(names) > 1:
                params.update(compare="1", b=names[1])
            driver.get(f"{url}/?{urlencode(params)}")
            wait = WebDriverWait(driver, 60)
            wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .column")) == len(names)
                       and len(d.find_elements(By.CSS_SELECTOR, "#history .hit")) > 0)
            time.sleep(0.5)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(args.out))
        finally:
            driver.quit()
    finally:
        stop(server)
        shutil.rmtree(profile, ignore_errors=True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
