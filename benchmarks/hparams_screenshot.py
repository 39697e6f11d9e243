r"""Checks a run folder's TensorBoard HParams dashboard in headless Chromium and screenshots it.

  python -m benchmarks.hparams_screenshot --run_dir=OUT --out=/tmp/hparams.png

--run_dir is a pipelines.compress run folder or a benchmarks.run output folder
(both keep their HParams in RUN/tensorboard/hparams). The script

1. reads the event files (`prunelm_tf.reporting.hparams.read_hparams`) and
   checks that every session has every HParams column of the experiment and
   at least one scalar, and that the experiment declares metrics;
2. starts TensorBoard on a free loopback port (``python -m tensorboard.main
   --logdir ... --host 127.0.0.1 --port P``);
3. opens ``http://127.0.0.1:P/#hparams`` in headless Chromium (selenium and
   chromedriver), waits until the HParams table view shows a row for every
   session, and saves a PNG screenshot of it to --out;
4. stops TensorBoard and the browser, and exits non-zero if a check failed.

Needs the ``dashboards`` extra (``pip install -e ".[dashboards]"``) and a
Chromium with its driver (Debian: ``apt-get install chromium chromium-driver``).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Dict, List, Mapping

# Text of every node of the page, descending into shadow roots (TensorBoard's
# dashboards are Polymer / Angular components; their text is not in body.innerText).
_DEEP_TEXT_JS = """
const parts = [];
const walk = (node) => {
  if (node.shadowRoot) walk(node.shadowRoot);
  if (node.nodeType === Node.TEXT_NODE) parts.push(node.textContent);
  for (const child of node.childNodes) walk(child);
};
walk(document.body);
return parts.join(' ');
"""


def hparams_dir(run_dir: str) -> str:
  """RUN/tensorboard/hparams (compression run folders and benchmark folders alike)."""
  from prunelm_tf.compression.run_folder import CompressionRunFolder  # pylint: disable=import-outside-toplevel
  return CompressionRunFolder(run_dir).hparams_dir


def check_sessions(found: Mapping) -> List[str]:
  """The problems of a `read_hparams` result ([] = every session is complete).

  A complete dashboard declares columns and metrics, has at least one session,
  and every session has exactly the experiment's columns and at least one scalar.
  """
  problems = []
  columns = set(found.get("columns") or [])
  if not columns:
    problems.append("the experiment declares no HParams columns (no hparams_config written)")
  if not found.get("metrics"):
    problems.append("the experiment declares no metrics")
  sessions: Dict[str, Mapping] = found.get("sessions") or {}
  if not sessions:
    problems.append("no sessions (no variant was written)")
  for name, session in sorted(sessions.items()):
    keys = set(session.get("hparams") or {})
    if keys != columns:
      problems.append(f"session {name}: columns differ from the experiment's (missing "
                      f"{sorted(columns - keys)}, extra {sorted(keys - columns)})")
    if not session.get("scalars"):
      problems.append(f"session {name}: no scalars")
  return problems


def missing_rows(page_text: str, sessions) -> List[str]:
  """The session names that do not appear in the page's text."""
  return [name for name in sessions if name not in page_text]


def free_port() -> int:
  """A TCP port free on 127.0.0.1 now (the OS picks it)."""
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _wait_http(url: str, process: subprocess.Popen, timeout: float) -> None:
  deadline = time.time() + timeout
  while time.time() < deadline:
    if process.poll() is not None:
      raise RuntimeError(f"TensorBoard exited with status {process.returncode} before serving.")
    try:
      with urllib.request.urlopen(url, timeout=5) as response:
        if response.status == 200:
          return
    except OSError:
      time.sleep(1)
  raise TimeoutError(f"TensorBoard did not answer {url} within {timeout:.0f} s.")


def _browser(chromium: str, chromedriver: str, width: int, height: int):
  from selenium import webdriver  # pylint: disable=import-outside-toplevel
  from selenium.webdriver.chrome.service import Service  # pylint: disable=import-outside-toplevel
  options = webdriver.ChromeOptions()
  options.binary_location = chromium
  for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              f"--window-size={width},{height}"):
    options.add_argument(arg)
  return webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)


def screenshot(log_dir: str, out: str, sessions, *, chromium: str, chromedriver: str,
               timeout: float, width: int, height: int) -> List[str]:
  """Serves ``log_dir``, renders #hparams, writes ``out``; returns the sessions not shown."""
  from prunelm_tf.utils import files  # pylint: disable=import-outside-toplevel
  port = free_port()
  log = tempfile.NamedTemporaryFile("w+", prefix="tensorboard_", suffix=".log", delete=False)
  tensorboard = subprocess.Popen(
      [sys.executable, "-m", "tensorboard.main", "--logdir", log_dir, "--host", "127.0.0.1",
       "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
  driver = None
  try:
    base = f"http://127.0.0.1:{port}"
    _wait_http(base + "/data/logdir", tensorboard, timeout)
    driver = _browser(chromium, chromedriver, width, height)
    driver.get(base + "/#hparams")
    deadline, missing = time.time() + timeout, list(sessions)
    while time.time() < deadline:
      missing = missing_rows(driver.execute_script(_DEEP_TEXT_JS), sessions)
      if not missing:
        break
      time.sleep(2)
    time.sleep(2)  # let the table finish its layout before the picture
    with files.atomic_path(out) as tmp, open(tmp, "wb") as f:
      f.write(driver.get_screenshot_as_png())
    return missing
  finally:
    if driver is not None:
      driver.quit()
    tensorboard.terminate()
    try:
      tensorboard.wait(timeout=20)
    except subprocess.TimeoutExpired:
      tensorboard.kill()
    log.close()
    os.remove(log.name)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--run_dir", required=True,
                      help="A pipelines.compress run folder or a benchmarks.run --out_dir.")
  parser.add_argument("--out", required=True, help="PNG file for the screenshot.")
  parser.add_argument("--chromium", default="/usr/bin/chromium", help="Chromium binary.")
  parser.add_argument("--chromedriver", default="/usr/bin/chromedriver",
                      help="chromedriver binary of the same version.")
  parser.add_argument("--timeout", type=float, default=120.0,
                      help="Seconds to wait for TensorBoard and for the table to render.")
  parser.add_argument("--width", type=int, default=1600, help="Browser window width (px).")
  parser.add_argument("--height", type=int, default=1100, help="Browser window height (px).")
  args = parser.parse_args()
  log_dir = hparams_dir(args.run_dir)
  for path, what in ((log_dir, "--run_dir has no tensorboard/hparams folder; run "
                               "pipelines.compress or benchmarks.run into it first"),
                     (args.chromium, "--chromium not found; apt-get install chromium"),
                     (args.chromedriver, "--chromedriver not found; apt-get install "
                                         "chromium-driver")):
    if not os.path.exists(path):
      parser.error(f"{path}: {what}.")
  if not args.out.endswith(".png"):
    parser.error(f"--out={args.out} must name a .png file.")

  import prunelm_tf  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  from prunelm_tf.reporting.hparams import read_hparams  # pylint: disable=import-outside-toplevel
  found = read_hparams(log_dir)
  problems = check_sessions(found)
  sessions = sorted(found["sessions"])
  print(f"{log_dir}: {len(sessions)} sessions, {len(found['columns'])} HParams columns, "
        f"{len(found['metrics'])} metrics")
  missing = screenshot(log_dir, args.out, sessions, chromium=args.chromium,
                       chromedriver=args.chromedriver, timeout=args.timeout, width=args.width,
                       height=args.height)
  problems += [f"session {name}: no row in the HParams table view" for name in missing]
  print(f"screenshot: {os.path.abspath(args.out)}")
  for problem in problems:
    print(f"FAILED: {problem}")
  if problems:
    sys.exit(1)
  print(f"OK: every session ({', '.join(sessions)}) has a row, the same "
        f"{len(found['columns'])} columns and scalars.")


if __name__ == "__main__":
  main()
