"""Drives headless Chromium over the DevTools protocol for tests/tests/dashboard.rs.

Starts Chromium (headless, its own profile dir, DevTools on a free loopback
port), opens the dashboard, and for every --visit waits until the page says
it is done (<body data-ready> "true", "auth" or "error" with the expected
<body data-view>), then saves the DOM as rendered and a full-page PNG. When
the page asks for a token, the --token values are typed into its form one
after the other (a wrong one first shows the refusal). Everything the page
wrote to the console, every uncaught exception and every browser log entry
(failed loads included) is collected. Prints one JSON report on stdout; the
Rust test makes the assertions. Exits non-zero only when the browser itself
could not be driven.

    dashboard_driver.py --chromium /usr/bin/chromium --base http://127.0.0.1:PORT/ \
        --out DIR [--token T ...] [--reload] [--dark] --visit NAME=HASH=VIEW ...
"""

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

from websockets.sync.client import connect

WIDTH = 1400
HEIGHT = 1000
WAIT_S = 30.0


class Cdp:
    """One DevTools session: numbered calls, events kept for the report."""

    def __init__(self, ws_url):
        self.ws = connect(ws_url, max_size=None, open_timeout=WAIT_S)
        self.next_id = 0
        self.events = []

    def call(self, method, **params):
        self.next_id += 1
        my_id = self.next_id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        deadline = time.monotonic() + WAIT_S
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer to {method} within {WAIT_S}s")
            msg = json.loads(self.ws.recv(timeout=left))
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def evaluate(self, expression):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"evaluate failed: {r['exceptionDetails']}")
        return r["result"].get("value")

    def close(self):
        self.ws.close()


def start_chromium(binary, profile, log):
    args = [
        binary,
        "--headless=new",
        "--disable-gpu",
        "--no-sandbox",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-features=Translate,MediaRouter,OptimizationHints",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        f"--window-size={WIDTH},{HEIGHT}",
        "about:blank",
    ]
    proc = subprocess.Popen(args, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    # Chromium writes the port it picked into the profile once DevTools listens.
    port_file = os.path.join(profile, "DevToolsActivePort")
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited with {proc.returncode} before DevTools listened")
        try:
            with open(port_file) as f:
                port = f.readline().strip()
            if port:
                return proc, int(port)
        except FileNotFoundError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise TimeoutError("chromium did not open DevTools in time")


def page_ws_url(port):
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
            targets = json.load(r)
        pages = [t for t in targets if t.get("type") == "page"]
        if pages:
            return pages[0]["webSocketDebuggerUrl"]
        time.sleep(0.05)
    raise TimeoutError("no page target")


STATE_JS = """JSON.stringify(document.body ? {
  ready: document.body.dataset.ready || null,
  view: document.body.dataset.view || null,
  error: document.body.dataset.error || null,
  auth: document.getElementById('auth-message') && !document.getElementById('auth').hidden
        ? document.getElementById('auth-message').textContent : null,
} : {ready: null})"""


def wait_done(cdp, view, previous=None):
    """Polls until the page finished rendering `view` (any view when None);
    `previous` (a state dict) must have changed first, so a re-render after
    a form submit is not mistaken for the state before it."""
    deadline = time.monotonic() + WAIT_S
    state = {}
    while time.monotonic() < deadline:
        state = json.loads(cdp.evaluate(STATE_JS))
        done = state.get("ready") in ("true", "auth", "error")
        if done and (view is None or state.get("view") == view) and state != previous:
            return state
        time.sleep(0.1)
    state["timed_out"] = True
    return state


def save_page(cdp, out, name):
    html_path = os.path.join(out, f"{name}.html")
    with open(html_path, "w", encoding="utf-8") as f:
        f.write(cdp.evaluate("document.documentElement.outerHTML"))
    metrics = cdp.call("Page.getLayoutMetrics")
    height = max(HEIGHT, int(metrics["cssContentSize"]["height"]))
    shot = cdp.call(
        "Page.captureScreenshot",
        format="png",
        captureBeyondViewport=True,
        clip={"x": 0, "y": 0, "width": WIDTH, "height": height, "scale": 1},
    )
    png_path = os.path.join(out, f"{name}.png")
    with open(png_path, "wb") as f:
        f.write(base64.b64decode(shot["data"]))
    return html_path, png_path


def console_report(events):
    out = []
    for e in events:
        m, p = e["method"], e.get("params", {})
        if m == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            out.append({"kind": "console", "level": p.get("type"), "text": text})
        elif m == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            text = d.get("exception", {}).get("description") or d.get("text", "")
            out.append({"kind": "exception", "level": "error", "text": text})
        elif m == "Log.entryAdded":
            entry = p.get("entry", {})
            out.append({
                "kind": "log",
                "level": entry.get("level"),
                "source": entry.get("source"),
                "text": entry.get("text", ""),
                "url": entry.get("url"),
            })
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chromium", required=True)
    ap.add_argument("--base", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--token", action="append", default=[])
    ap.add_argument("--reload", action="store_true", help="reload after the last visit and record the state")
    ap.add_argument("--dark", action="store_true", help="emulate prefers-color-scheme: dark")
    ap.add_argument("--visit", action="append", default=[], help="NAME=HASH=VIEW")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    profile = tempfile.mkdtemp(prefix="authpulse-chromium-")
    log = open(os.path.join(args.out, "chromium.log"), "wb")
    proc = None
    report = {"visits": [], "auth_states": [], "console": []}
    try:
        proc, port = start_chromium(args.chromium, profile, log)
        cdp = Cdp(page_ws_url(port))
        cdp.call("Runtime.enable")
        cdp.call("Log.enable")
        cdp.call("Page.enable")
        cdp.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1, mobile=False)
        if args.dark:
            cdp.call("Emulation.setEmulatedMedia", features=[{"name": "prefers-color-scheme", "value": "dark"}])
        tokens = list(args.token)
        for i, visit in enumerate(args.visit):
            name, hash_, view = visit.split("=", 2)
            cdp.call("Page.navigate", url=args.base + hash_)
            # The first load must leave about:blank; later ones change the view.
            state = wait_done(cdp, None if i == 0 else view)
            while state.get("ready") == "auth" and tokens:
                report["auth_states"].append(state)
                cdp.evaluate("document.getElementById('auth-token').focus()")
                cdp.call("Input.insertText", text=tokens.pop(0))
                cdp.evaluate("document.getElementById('auth-form').requestSubmit()")
                state = wait_done(cdp, view, previous=state)
            if state.get("view") != view and not state.get("timed_out"):
                state = wait_done(cdp, view)
            html, png = save_page(cdp, args.out, name)
            state.update({"name": name, "html": html, "png": png})
            state["token_stored"] = cdp.evaluate("sessionStorage.getItem('authpulse.api-token')")
            report["visits"].append(state)
        if args.reload:
            # A marker on the old document: the state counts once it is gone.
            cdp.evaluate("window.__authpulseBeforeReload = true")
            cdp.call("Page.reload", ignoreCache=True)
            deadline = time.monotonic() + WAIT_S
            while time.monotonic() < deadline and cdp.evaluate("window.__authpulseBeforeReload === true"):
                time.sleep(0.05)
            report["after_reload"] = wait_done(cdp, None)
        cdp.close()
        report["console"] = console_report(cdp.events)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        shutil.rmtree(profile, ignore_errors=True)
    json.dump(report, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
