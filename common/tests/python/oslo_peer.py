"""A Python oslo.messaging peer for faafo's interoperability tests.

Modes (URL is an oslo transport URL such as rabbit://guest:guest@127.0.0.1:5672/vhost):
  server URL TOPIC SERVER   serve the test endpoint; prints READY, runs until stdin closes
  client URL TOPIC          run the client scenario against TOPIC; one JSON line per step
  listen URL                print every notification as a JSON line; READY first
  notify URL                send one notification, then exit

OSLO_CONFIG_FILE, when set, names an oslo.config file to read (to set
[oslo_messaging_rabbit] kombu_compression, say).
"""

import json
import os
import sys
import threading
import time

from oslo_config import cfg
from oslo_context import context
import oslo_messaging as messaging


class MyError(Exception):
    """An exception of a module a client cannot import (__main__)."""


class TestEndpoint:
    target = messaging.Target(version="1.3")

    def __init__(self):
        self.count = 0
        self.lock = threading.Lock()

    def echo(self, ctxt, value):
        return value

    def request_id(self, ctxt):
        return ctxt.get("request_id")

    def count_up(self, ctxt):
        with self.lock:
            self.count += 1

    def get_count(self, ctxt):
        with self.lock:
            return self.count

    def fail(self, ctxt, message):
        raise ValueError(message)

    def custom_fail(self, ctxt, message):
        raise MyError(message)

    def sleep(self, ctxt, seconds):
        time.sleep(seconds)
        return seconds


def conf():
    config_file = os.environ.get("OSLO_CONFIG_FILE")
    cfg.CONF(["--config-file", config_file] if config_file else [], project="faafo-interop")
    return cfg.CONF


def describe_error(e):
    return {
        "type": type(e).__name__,
        "exc_type": getattr(e, "exc_type", None),
        "message": str(getattr(e, "value", None) or e).split("\n")[0],
    }


def run_server(url, topic, server):
    transport = messaging.get_rpc_transport(conf(), url=url)
    target = messaging.Target(topic=topic, server=server)
    rpc = messaging.get_rpc_server(transport, target, [TestEndpoint()])
    rpc.start()
    print("READY", flush=True)
    sys.stdin.read()
    rpc.stop()
    rpc.wait()


def run_client(url, topic):
    transport = messaging.get_rpc_transport(conf(), url=url)
    client = messaging.get_rpc_client(transport, messaging.Target(topic=topic), timeout=15)
    ctxt = {"request_id": "req-py-1", "user": "alice"}

    def step(name, fn):
        try:
            out = {"step": name, "ok": fn()}
        except Exception as e:  # noqa: BLE001 - every error is data here
            out = {"step": name, "error": describe_error(e)}
        print(json.dumps(out, sort_keys=True), flush=True)

    step("echo", lambda: client.call(ctxt, "echo", value=[1, "x", {"a": None}, 2.5]))
    step("request_id", lambda: client.call(ctxt, "request_id"))
    for _ in range(3):
        client.cast(ctxt, "count_up")
    def wait_count():
        deadline = time.time() + 10
        while time.time() < deadline:
            n = client.call(ctxt, "get_count")
            if n >= 3:
                return n
            time.sleep(0.05)
        return n
    step("casts", wait_count)
    step("no_such_method", lambda: client.call(ctxt, "nope"))
    step("remote_value_error", lambda: client.call(ctxt, "fail", message="boom"))
    step("remote_custom_error", lambda: client.call(ctxt, "custom_fail", message="custom"))
    step("newer_version", lambda: client.prepare(version="1.5").call(ctxt, "echo", value=1))
    step("older_version", lambda: client.prepare(version="1.1").call(ctxt, "echo", value="v"))
    step("bad_arguments", lambda: client.call(ctxt, "echo", wrong=1))
    # A heartbeat every 1.5 s keeps the 4.5 s call alive, with room to spare.
    monitored = client.prepare(timeout=20, call_monitor_timeout=3)
    step("call_monitor", lambda: monitored.call(ctxt, "sleep", seconds=4.5))


def run_listener(url):
    transport = messaging.get_notification_transport(conf(), url=url)

    class Printer:
        def _print(self, priority, ctxt, publisher_id, event_type, payload):
            print(json.dumps({"priority": priority, "publisher_id": publisher_id,
                              "event_type": event_type, "payload": payload,
                              "request_id": ctxt.get("request_id")}, sort_keys=True), flush=True)
            return messaging.NotificationResult.HANDLED

        def info(self, ctxt, publisher_id, event_type, payload, metadata):
            return self._print("info", ctxt, publisher_id, event_type, payload)

        def error(self, ctxt, publisher_id, event_type, payload, metadata):
            return self._print("error", ctxt, publisher_id, event_type, payload)

    listener = messaging.get_notification_listener(
        transport, [messaging.Target(topic="notifications")], [Printer()])
    listener.start()
    print("READY", flush=True)
    sys.stdin.read()
    listener.stop()
    listener.wait()


def run_notify(url):
    transport = messaging.get_notification_transport(conf(), url=url)
    notifier = messaging.Notifier(transport, publisher_id="python.peer", driver="messagingv2",
                                  topics=["notifications"])
    # The notifier drops plain-dict contexts; a RequestContext travels.
    ctxt = context.RequestContext(request_id="req-py-n", user_id="alice")
    notifier.info(ctxt, "fractal.rendered", {"uuid": "from-python", "size": 3})
    # Without a publisher id, oslo sends "publisher_id": null.
    anonymous = messaging.Notifier(transport, driver="messagingv2", topics=["notifications"])
    anonymous.info(ctxt, "fractal.anonymous", {})
    transport.cleanup()


if __name__ == "__main__":
    mode, url = sys.argv[1], sys.argv[2]
    if mode == "server":
        run_server(url, sys.argv[3], sys.argv[4])
    elif mode == "client":
        run_client(url, sys.argv[3])
    elif mode == "listen":
        run_listener(url)
    elif mode == "notify":
        run_notify(url)
    else:
        sys.exit(f"unknown mode {mode}")
