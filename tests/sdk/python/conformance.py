"""Conformance suite for the official Livepeer Python SDK (PyPI `livepeer`, pinned in
requirements.txt).

Drives every stream/multistream/webhook/accessControl/playback operation against a
Studio-compatible server and asserts that each response lands in the SDK's success field: no
pydantic ValidationError, no `error` field, the documented status code, and the values we sent
coming back.

Usage: STUDIO_API_URL=http://127.0.0.1:PORT/api STUDIO_API_KEY=<key> python conformance.py

Prints "ok <operation>" per passing check and stops at the first failure with the operation,
the last HTTP exchange (method, URL, status, body) and a non-zero exit code.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
import time
from datetime import datetime
from typing import Any, Callable, Optional

import httpx
import pydantic
from livepeer import Livepeer
from livepeer.models import errors
from livepeer.utils import BackoffStrategy, RetryConfig

BODY_LIMIT = 4000
DEFAULT_PROFILES = [
    {"name": "240p0", "width": 426, "height": 240, "bitrate": 250000, "fps": 0},
    {"name": "360p0", "width": 640, "height": 360, "bitrate": 800000, "fps": 0},
    {"name": "480p0", "width": 854, "height": 480, "bitrate": 1600000, "fps": 0},
    {"name": "720p0", "width": 1280, "height": 720, "bitrate": 3000000, "fps": 0},
]


class CheckFailed(Exception):
    pass


# The SDK parses response bodies into models that drop unknown fields, so keep a copy of the
# last exchange for failure reports (and for fields the SDK strips, such as a signing key's
# privateKey).
class Exchange:
    def __init__(self) -> None:
        self.last: Optional[dict[str, Any]] = None

    def on_request(self, request: httpx.Request) -> None:
        body = request.content.decode("utf-8", "replace") if request.content else ""
        self.last = {"method": request.method, "url": str(request.url), "request_body": body}

    def on_response(self, response: httpx.Response) -> None:
        response.read()
        if self.last is not None:
            self.last["status"] = response.status_code
            self.last["content_type"] = response.headers.get("content-type", "")
            self.last["response_body"] = response.text


def clip(s: str) -> str:
    return s if len(s) <= BODY_LIMIT else f"{s[:BODY_LIMIT]}... ({len(s)} bytes)"


def show(v: Any) -> str:
    return json.dumps(v, default=str)


def check(cond: Any, message: str) -> None:
    if not cond:
        raise CheckFailed(message)


def check_equal(actual: Any, expected: Any, what: str) -> None:
    check(actual == expected, f"{what}: expected {show(expected)}, got {show(actual)}")


def check_subset(actual: Any, expected: Any, what: str) -> None:
    """Every key of `expected` must be present in `actual` with an equal value (recursively);
    extra keys in `actual` are allowed. Lists must have the same length."""
    if isinstance(expected, list):
        check(isinstance(actual, list), f"{what}: expected a list, got {show(actual)}")
        check(len(actual) == len(expected), f"{what}: expected {len(expected)} items, got {show(actual)}")
        for i, e in enumerate(expected):
            check_subset(actual[i], e, f"{what}[{i}]")
    elif isinstance(expected, dict):
        check(isinstance(actual, dict), f"{what}: expected an object, got {show(actual)}")
        for k, v in expected.items():
            check(k in actual, f"{what}.{k}: missing (got keys {sorted(actual)})")
            check_subset(actual[k], v, f"{what}.{k}")
    else:
        check(actual == expected, f"{what}: expected {show(expected)}, got {show(actual)}")


def check_id(v: Any, what: str) -> None:
    check(isinstance(v, str) and v != "", f"{what}: expected a non-empty string, got {show(v)}")


def as_json(model: Any) -> Any:
    """A parsed SDK model as wire-shaped JSON (camelCase keys, enums as their values)."""
    if isinstance(model, list):
        return [as_json(m) for m in model]
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def check_success(res: Any, status: int, field: Optional[str] = None) -> Any:
    """The SDK returns (instead of raising) responses whose status is not the documented one but
    that carry an error model: that lands in `error` and the data field stays empty."""
    code = res.http_meta.response.status_code
    # Some responses (task.get) have no error model, hence no `error` field.
    error = getattr(res, "error", None)
    check(error is None, f"response landed in the SDK's `error` field (status {code}): {error}")
    check(code == status, f"expected status {status}, got {code}")
    if field is None:
        return None
    value = getattr(res, field)
    check(value is not None, f"response field `{field}` is empty")
    return value


def check_error_body(body: str) -> None:
    """Studio error bodies are always JSON {"errors": ["message", ...]}."""
    try:
        parsed = json.loads(body)
    except ValueError:
        raise CheckFailed(f"error body is not JSON: {show(clip(body))}") from None
    errs = parsed.get("errors") if isinstance(parsed, dict) else None
    check(
        isinstance(errs, list) and errs and all(isinstance(e, str) for e in errs),
        f'error body must be {{"errors": ["...", ...]}}, got {clip(body)}',
    )


class Suite:
    def __init__(self, server_url: str, api_key: str) -> None:
        self.exchange = Exchange()
        client = httpx.Client(
            event_hooks={"request": [self.exchange.on_request], "response": [self.exchange.on_response]},
        )
        self.lp = Livepeer(
            api_key=api_key,
            server_url=server_url,
            client=client,
            retry_config=RetryConfig("none", BackoffStrategy(0, 0, 1.0, 0), False),
            timeout_ms=30_000,
        )
        self.passed = 0
        self.run = f"{int(time.time() * 1000):x}{secrets.token_hex(2)}"

    # ------------------------------------------------------------------ harness

    def step(self, name: str, fn: Callable[[], Any]) -> Any:
        self.exchange.last = None
        try:
            value = fn()
        except Exception as err:  # noqa: BLE001 - every failure is reported the same way
            self.fail(name, err)
        self.passed += 1
        print(f"ok {name}", flush=True)
        return value

    def fail(self, name: str, err: Exception) -> None:
        lines = [f"FAIL {name}"]
        if isinstance(err, pydantic.ValidationError):
            lines.append(f"  SDK rejected the response (pydantic ValidationError): {err}")
            if "instance of Error" in str(err):
                lines.append("  (the status code is not the one the SDK expects, so it parsed the body as its error model)")
        elif isinstance(err, errors.SDKError):
            lines.append(f"  SDKError: {err.message} (status {err.status_code})")
        elif isinstance(err, errors.Error):
            lines.append(f"  SDK raised the typed Studio error: {err}")
        elif isinstance(err, CheckFailed):
            lines.append(f"  {err}")
        else:
            lines.append(f"  unexpected exception: {type(err).__name__}: {err}")
        last = self.exchange.last
        if last:
            lines.append(f"  request: {last['method']} {last['url']}")
            if last["request_body"]:
                lines.append(f"  request body: {clip(last['request_body'])}")
            if "status" in last:
                lines.append(f"  response: {last['status']} ({last['content_type'] or 'no content-type'})")
                lines.append(f"  response body: {clip(last['response_body']) or '(empty)'}")
            else:
                lines.append("  no response received")
        print("\n".join(lines), file=sys.stderr, flush=True)
        print(f"conformance: {self.passed} passed, 1 failed", flush=True)
        sys.exit(1)

    def expect_404(self, fn: Callable[[], Any]) -> None:
        """The call must be rejected with HTTP 404 (SDKError) or, for operations that declare a
        typed 404 (playback), with the parsed Studio error body."""
        try:
            res = fn()
        except errors.SDKError as err:
            check(err.status_code == 404, f"expected status 404, got {err.status_code}")
            check_error_body(err.body)
            return
        except errors.Error as err:
            last = self.exchange.last or {}
            check(last.get("status") == 404, f"expected status 404, got {last.get('status')}")
            check(err.data.errors, f'404 body must be {{"errors": [...]}}, got {err}')
            return
        raise CheckFailed(
            f"expected the SDK to raise for status 404, but it returned status {res.http_meta.response.status_code}"
        )

    # ------------------------------------------------------------------ stream (+ playback)

    def streams(self) -> None:
        lp, run = self.lp, self.run
        stream_input = {
            "name": f"sdk-py-stream-{run}",
            "profiles": [
                {"name": "720p-custom", "width": 1280, "height": 720, "bitrate": 2500000, "fps": 30,
                 "fps_den": 1, "gop": "2.0", "profile": "H264High", "encoder": "H.264"},
                {"name": "360p", "width": 640, "height": 360, "bitrate": 800000, "fps": 0},
            ],
            "record": True,
            "user_tags": {"team": "sdk", "priority": 3, "labels": ["a", 2]},
            "playback_policy": {"type": "public"},
        }
        # The same profiles as they appear on the wire.
        wire_profiles = [
            {"name": "720p-custom", "width": 1280, "height": 720, "bitrate": 2500000, "fps": 30,
             "fpsDen": 1, "gop": "2.0", "profile": "H264High", "encoder": "H.264"},
            {"name": "360p", "width": 640, "height": 360, "bitrate": 800000, "fps": 0},
        ]

        def create() -> dict:
            s = as_json(check_success(lp.stream.create(request=stream_input), 201, "stream"))
            for k in ("id", "streamKey", "playbackId"):
                check_id(s.get(k), f"stream.{k}")
            check_equal(s.get("name"), stream_input["name"], "stream.name")
            check_subset(s.get("profiles"), wire_profiles, "stream.profiles")
            check_equal(s.get("record"), True, "stream.record")
            check_equal(s.get("userTags"), stream_input["user_tags"], "stream.userTags")
            check_equal((s.get("playbackPolicy") or {}).get("type"), "public", "stream.playbackPolicy.type")
            check_equal(s.get("isActive"), False, "stream.isActive")
            check_equal(s.get("suspended"), False, "stream.suspended")
            return s

        stream = self.step("stream.create", create)

        def create_defaults() -> dict:
            name = f"sdk-py-defaults-{run}"
            s = as_json(check_success(lp.stream.create(request={"name": name}), 201, "stream"))
            check_id(s.get("id"), "stream.id")
            check_equal(s.get("name"), name, "stream.name")
            check_subset(s.get("profiles"), DEFAULT_PROFILES, "stream.profiles")
            check_equal(s.get("record"), False, "stream.record")
            return s

        default_stream = self.step("stream.create (default profiles)", create_defaults)

        def get() -> None:
            s = as_json(check_success(lp.stream.get(id=stream["id"]), 200, "stream"))
            for k in ("id", "name", "streamKey", "playbackId", "record", "userTags"):
                check_equal(s.get(k), stream.get(k), f"stream.{k}")
            check_subset(s.get("profiles"), wire_profiles, "stream.profiles")

        self.step("stream.get", get)

        def get_all() -> None:
            ids = [s.id for s in check_success(lp.stream.get_all(), 200, "data")]
            for sid in (stream["id"], default_stream["id"]):
                check(sid in ids, f"stream {sid} missing from list {show(ids)}")

        self.step("stream.get_all", get_all)

        def get_all_streamsonly() -> None:
            ids = [s.id for s in check_success(lp.stream.get_all(streamsonly="1"), 200, "data")]
            check(stream["id"] in ids, f"stream {stream['id']} missing from list")

        self.step("stream.get_all (streamsonly=1)", get_all_streamsonly)

        def playback() -> None:
            info = as_json(check_success(lp.playback.get(id=stream["playbackId"]), 200, "playback_info"))
            check_equal(info.get("type"), "live", "playbackInfo.type")
            sources = info["meta"]["source"]
            by_hrn = {s["hrn"]: s for s in sources}
            check("HLS (TS)" in by_hrn, f'meta.source has no "HLS (TS)" entry: {show(sources)}')
            check_equal(by_hrn["HLS (TS)"]["type"], "html5/application/vnd.apple.mpegurl", "HLS source type")
            check(stream["playbackId"] in by_hrn["HLS (TS)"]["url"], "the HLS url contains the playback id")
            # HLS, then WebRTC (WHEP), as Studio lists them.
            check_equal([s["hrn"] for s in sources], ["HLS (TS)", "WebRTC (H264)"], "live source names")
            check_equal(by_hrn["WebRTC (H264)"]["type"], "html5/video/h264", "WebRTC source type")
            check(
                by_hrn["WebRTC (H264)"]["url"].endswith("/webrtc/" + stream["playbackId"]),
                "the WebRTC url ends with /webrtc/{playbackId}",
            )
            check_equal(info["meta"].get("live"), 0, "meta.live (stream is idle)")

        self.step("playback.get", playback)
        self.step("playback.get (unknown id -> 404)", lambda: self.expect_404(lambda: lp.playback.get(id="nonexistent")))

        # The Python SDK's StreamPatchPayload has no `name` (unlike the TS SDK): a name passed
        # here would be dropped silently, so only record and user_tags are patched.
        new_tags = {"team": "sdk", "stage": "updated"}

        def update() -> None:
            patch = {"record": False, "user_tags": new_tags}
            check_success(lp.stream.update(id=stream["id"], stream_patch_payload=patch), 204)
            s = as_json(check_success(lp.stream.get(id=stream["id"]), 200, "stream"))
            check_equal(s.get("record"), False, "stream.record after update")
            check_equal(s.get("userTags"), new_tags, "stream.userTags after update")
            check_equal(s.get("name"), stream["name"], "stream.name after update")
            check_subset(s.get("profiles"), wire_profiles, "stream.profiles after update")

        self.step("stream.update (record, user_tags)", update)

        for suspended in (True, False):
            def update_suspended(suspended: bool = suspended) -> None:
                check_success(lp.stream.update(id=stream["id"], stream_patch_payload={"suspended": suspended}), 204)
                s = as_json(check_success(lp.stream.get(id=stream["id"]), 200, "stream"))
                check_equal(s.get("suspended"), suspended, "stream.suspended after update")

            self.step(f"stream.update (suspended={str(suspended).lower()})", update_suspended)

        inline_name = f"sdk-py-inline-{run}"

        def add_target() -> str:
            payload = {"profile": "source", "spec": {"name": inline_name, "url": "rtmp://example.com/live/key"}}
            check_success(lp.stream.add_multistream_target(id=stream["id"], target_add_payload=payload), 204)
            s = as_json(check_success(lp.stream.get(id=stream["id"]), 200, "stream"))
            targets = (s.get("multistream") or {}).get("targets") or []
            check(len(targets) == 1, f"expected 1 multistream target on the stream, got {show(s.get('multistream'))}")
            check_equal(targets[0].get("profile"), "source", "multistream.targets[0].profile")
            check_id(targets[0].get("id"), "multistream.targets[0].id")
            return targets[0]["id"]

        inline_target_id = self.step("stream.add_multistream_target", add_target)

        def get_inline_target() -> None:
            t = as_json(check_success(lp.multistream.get(id=inline_target_id), 200, "multistream_target"))
            check_equal(t.get("id"), inline_target_id, "multistreamTarget.id")
            check_equal(t.get("name"), inline_name, "multistreamTarget.name")

        self.step("multistream.get (target created inline)", get_inline_target)

        def remove_target() -> None:
            check_success(lp.stream.remove_multistream_target(id=stream["id"], target_id=inline_target_id), 204)
            s = as_json(check_success(lp.stream.get(id=stream["id"]), 200, "stream"))
            targets = (s.get("multistream") or {}).get("targets") or []
            check(not targets, f"expected no multistream targets after removal, got {show(s.get('multistream'))}")

        self.step("stream.remove_multistream_target", remove_target)
        self.step(
            "multistream.delete (target created inline)",
            lambda: check_success(lp.multistream.delete(id=inline_target_id), 204),
        )
        self.step("stream.terminate", lambda: check_success(lp.stream.terminate(id=stream["id"]), 204))

        def delete() -> None:
            check_success(lp.stream.delete(id=stream["id"]), 204)
            check_success(lp.stream.delete(id=default_stream["id"]), 204)

        self.step("stream.delete", delete)
        self.step("stream.get (deleted -> 404)", lambda: self.expect_404(lambda: lp.stream.get(id=stream["id"])))
        self.step(
            "playback.get (deleted stream -> 404)",
            lambda: self.expect_404(lambda: lp.playback.get(id=stream["playbackId"])),
        )

    # ------------------------------------------------------------------ multistream

    def multistream(self) -> None:
        lp = self.lp
        name = f"sdk-py-target-{self.run}"

        def create() -> dict:
            res = lp.multistream.create(request={"name": name, "url": "rtmp://example.com/live/abc"})
            t = as_json(check_success(res, 201, "multistream_target"))
            check_id(t.get("id"), "multistreamTarget.id")
            check_equal(t.get("name"), name, "multistreamTarget.name")
            check(t.get("disabled") in (None, False), f"multistreamTarget.disabled: expected false, got {show(t.get('disabled'))}")
            return t

        target = self.step("multistream.create", create)

        def get_all() -> None:
            ids = [t.id for t in check_success(lp.multistream.get_all(), 200, "data")]
            check(target["id"] in ids, f"target {target['id']} missing from list {show(ids)}")

        self.step("multistream.get_all", get_all)

        def get() -> None:
            t = as_json(check_success(lp.multistream.get(id=target["id"]), 200, "multistream_target"))
            check_equal(t.get("id"), target["id"], "multistreamTarget.id")
            check_equal(t.get("name"), name, "multistreamTarget.name")

        self.step("multistream.get", get)

        def update() -> None:
            new_name = f"{name}-renamed"
            # The SDK's patch payload requires `url`.
            patch = {"name": new_name, "url": "rtmp://example.com/live/def", "disabled": True}
            check_success(lp.multistream.update(id=target["id"], multistream_target_patch_payload=patch), 204)
            t = as_json(check_success(lp.multistream.get(id=target["id"]), 200, "multistream_target"))
            check_equal(t.get("name"), new_name, "multistreamTarget.name after update")
            check_equal(t.get("disabled"), True, "multistreamTarget.disabled after update")

        self.step("multistream.update", update)
        self.step("multistream.delete", lambda: check_success(lp.multistream.delete(id=target["id"]), 204))
        self.step(
            "multistream.get (deleted -> 404)",
            lambda: self.expect_404(lambda: lp.multistream.get(id=target["id"])),
        )

    # ------------------------------------------------------------------ webhook

    def webhooks(self) -> None:
        lp = self.lp
        webhook_input = {
            "name": f"sdk-py-webhook-{self.run}",
            "url": "https://example.com/hooks/studio",
            "events": ["stream.started", "stream.idle"],
        }

        def create() -> dict:
            w = as_json(check_success(lp.webhook.create(request=webhook_input), 200, "webhook"))
            check_id(w.get("id"), "webhook.id")
            check_subset(w, webhook_input, "webhook")
            return w

        webhook = self.step("webhook.create", create)

        def get_all() -> None:
            ids = [w.id for w in check_success(lp.webhook.get_all(), 200, "data")]
            check(webhook["id"] in ids, f"webhook {webhook['id']} missing from list")

        self.step("webhook.get_all", get_all)

        def get() -> None:
            w = as_json(check_success(lp.webhook.get(id=webhook["id"]), 200, "webhook"))
            check_equal(w.get("id"), webhook["id"], "webhook.id")
            check_subset(w, webhook_input, "webhook")

        self.step("webhook.get", get)

        update_input = {
            "name": f"{webhook_input['name']}-renamed",
            "url": "https://example.com/hooks/studio-v2",
            "events": ["stream.started", "recording.ready"],
        }

        def update() -> None:
            w = as_json(check_success(lp.webhook.update(id=webhook["id"], webhook=update_input), 200, "webhook"))
            check_equal(w.get("id"), webhook["id"], "webhook.id")
            check_subset(w, update_input, "returned webhook")
            got = as_json(check_success(lp.webhook.get(id=webhook["id"]), 200, "webhook"))
            check_subset(got, update_input, "webhook after update")

        self.step("webhook.update", update)

        def get_logs() -> None:
            logs = as_json(check_success(lp.webhook.get_logs(id=webhook["id"]), 200, "data"))
            check(isinstance(logs, list), f"expected a list, got {show(logs)}")
            for log in logs:
                check_equal(log.get("webhookId"), webhook["id"], "webhookLog.webhookId")
            if logs:
                log = as_json(check_success(lp.webhook.get_log(id=webhook["id"], log_id=logs[0]["id"]), 200, "webhook_log"))
                check_equal(log.get("id"), logs[0]["id"], "webhookLog.id")

        self.step("webhook.get_logs", get_logs)

        def delete() -> None:
            w = as_json(check_success(lp.webhook.delete(id=webhook["id"]), 200, "webhook"))
            check_equal(w.get("id"), webhook["id"], "deleted webhook.id")

        self.step("webhook.delete", delete)
        self.step("webhook.get (deleted -> 404)", lambda: self.expect_404(lambda: lp.webhook.get(id=webhook["id"])))

    # ------------------------------------------------------------------ access control (signing keys)

    def signing_keys(self) -> None:
        lp = self.lp

        def create() -> dict:
            k = as_json(check_success(lp.access_control.create(), 200, "signing_key"))
            check_id(k.get("id"), "signingKey.id")
            check_id(k.get("publicKey"), "signingKey.publicKey")
            pem = base64.b64decode(k["publicKey"]).decode("utf-8", "replace")
            check(pem.startswith("-----BEGIN PUBLIC KEY-----"), f"publicKey must be base64 of an SPKI PEM, decodes to {show(pem[:40])}")
            # The SDK's model has no privateKey (pydantic drops it), so read the raw body.
            raw = json.loads((self.exchange.last or {}).get("response_body") or "{}")
            if raw.get("privateKey") is not None:
                priv = base64.b64decode(str(raw["privateKey"])).decode("utf-8", "replace")
                check(priv.startswith("-----BEGIN PRIVATE KEY-----"), f"privateKey must be base64 of a PKCS#8 PEM, decodes to {show(priv[:40])}")
            else:
                print("note: access_control.create response has no privateKey", flush=True)
            return k

        key = self.step("access_control.create", create)

        def get_all() -> None:
            ids = [k.id for k in check_success(lp.access_control.get_all(), 200, "data")]
            check(key["id"] in ids, f"signing key {key['id']} missing from list")

        self.step("access_control.get_all", get_all)

        def get() -> None:
            k = as_json(check_success(lp.access_control.get(key_id=key["id"]), 200, "signing_key"))
            check_equal(k.get("id"), key["id"], "signingKey.id")
            check_equal(k.get("publicKey"), key["publicKey"], "signingKey.publicKey")

        self.step("access_control.get", get)

        def disable() -> None:
            check_success(lp.access_control.update(key_id=key["id"], request_body={"disabled": True}), 204)
            k = as_json(check_success(lp.access_control.get(key_id=key["id"]), 200, "signing_key"))
            check_equal(k.get("disabled"), True, "signingKey.disabled after update")

        self.step("access_control.update (disabled=true)", disable)

        def rename() -> None:
            name = f"sdk-py-key-{self.run}"
            check_success(lp.access_control.update(key_id=key["id"], request_body={"name": name}), 204)
            k = as_json(check_success(lp.access_control.get(key_id=key["id"]), 200, "signing_key"))
            check_equal(k.get("name"), name, "signingKey.name after update")
            check_equal(k.get("disabled"), True, "signingKey.disabled after renaming")

        self.step("access_control.update (name)", rename)
        self.step("access_control.delete", lambda: check_success(lp.access_control.delete(key_id=key["id"]), 204))
        self.step(
            "access_control.get (deleted -> 404)",
            lambda: self.expect_404(lambda: lp.access_control.get(key_id=key["id"])),
        )

    def recordings(self, session_id: str) -> None:
        """The recording asset of a recorded session whose recording is ready (published by
        tests/api/recording.rs, which sets STUDIO_RECORDING_SESSION_ID), and the session's
        recording fields."""
        lp = self.lp

        def get_asset() -> Any:
            a = as_json(check_success(lp.asset.get(asset_id=session_id), 200, "asset"))
            expected = {"id": session_id, "source": {"type": "recording", "sessionId": session_id}, "status": {"phase": "ready"}}
            check_subset(a, expected, "asset")
            for k in ("playbackId", "playbackUrl", "downloadUrl"):
                check_id(a.get(k), f"asset.{k}")
            check((a.get("size") or 0) > 0, f"asset.size: {show(a.get('size'))}")
            spec = a.get("videoSpec") or {}
            check(spec.get("format") == "mp4" and (spec.get("duration") or 0) > 0, f"asset.videoSpec: {show(spec)}")
            return a

        asset = self.step("asset.get (recording)", get_asset)

        def get_all_assets() -> None:
            assets = as_json(check_success(lp.asset.get_all(), 200, "data"))
            check(any(a["id"] == session_id for a in assets), f"recording asset {session_id} missing from list")

        self.step("asset.get_all", get_all_assets)

        def get_session() -> Any:
            s = as_json(check_success(lp.session.get(id=session_id), 200, "session"))
            expected = {"id": session_id, "record": True, "recordingStatus": "ready", "recordingUrl": asset["playbackUrl"], "mp4Url": asset["downloadUrl"]}
            check_subset(s, expected, "session")
            return s

        session = self.step("session.get (recorded)", get_session)

        def get_all_sessions() -> None:
            sessions = as_json(check_success(lp.session.get_all(), 200, "data"))
            listed = [s for s in sessions if s["id"] == session_id]
            check(len(listed) == 1, f"session {session_id} missing from list")
            check_equal(listed[0].get("recordingStatus"), "ready", "listed session.recordingStatus")

        self.step("session.get_all", get_all_sessions)

        def get_recorded() -> None:
            sessions = as_json(check_success(lp.session.get_recorded(parent_id=session["parentId"]), 200, "data"))
            check_equal([s.get("mp4Url") for s in sessions], [asset["downloadUrl"]], "recorded sessions' mp4Url")

        self.step("session.get_recorded", get_recorded)

        def playback_asset() -> None:
            info = as_json(check_success(lp.playback.get(id=asset["playbackId"]), 200, "playback_info"))
            check_equal(info.get("type"), "vod", "playbackInfo.type")
            check_equal([s["hrn"] for s in info["meta"]["source"]], ["MP4", "HLS (TS)"], "vod sources")
            check_equal(info["meta"]["source"][0]["url"], asset["downloadUrl"], "MP4 source url")

        self.step("playback.get (recording asset)", playback_asset)

        def playback_session() -> None:
            info = as_json(check_success(lp.playback.get(id=session_id), 200, "playback_info"))
            check_equal(info.get("type"), "recording", "playbackInfo.type")
            check_equal([s["url"] for s in info["meta"]["source"]], [asset["playbackUrl"]], "recording sources")

        self.step("playback.get (session id)", playback_session)

        # A clip of the recorded session, at times read from the recording's playlist as a
        # player reads them (EXT-X-PROGRAM-DATE-TIME).
        stream = as_json(check_success(lp.stream.get(id=session["parentId"]), 200, "stream"))
        playlist_url = asset["playbackUrl"].replace("index.m3u8", "source/index.m3u8")
        playlist = httpx.get(playlist_url, timeout=10).text
        dates = [
            datetime.fromisoformat(line.split(":", 1)[1].replace("Z", "+00:00"))
            for line in playlist.splitlines()
            if line.startswith("#EXT-X-PROGRAM-DATE-TIME:")
        ]
        start = int(dates[1].timestamp() * 1000) + 200 if len(dates) > 1 else 0

        def create_clip() -> Any:
            check(start > 0, f"the recording's playlist carries program dates: {playlist!r}")
            payload = {"playbackId": stream["playbackId"], "sessionId": session_id, "startTime": start, "endTime": start + 2000, "name": f"sdk-py-clip-{self.run}"}
            data = as_json(check_success(lp.stream.create_clip(request=payload), 200, "data"))
            check_subset(data["asset"], {"name": f"sdk-py-clip-{self.run}", "source": {"type": "clip", "playbackId": stream["playbackId"], "sessionId": session_id}}, "clip asset")
            check_id(data["task"].get("id"), "task.id")
            return data["asset"]

        clip = self.step("stream.create_clip", create_clip)

        def stream_clips() -> None:
            clips = as_json(check_success(lp.stream.get_clips(id=session["parentId"]), 200, "data"))
            check(any(c["id"] == clip["id"] for c in clips), f"clip {clip['id']} missing from the stream's clips")

        self.step("stream.get_clips", stream_clips)

        def session_clips() -> None:
            clips = as_json(check_success(lp.session.get_clips(id=session_id), 200, "data"))
            check(any(c["id"] == clip["id"] for c in clips), f"clip {clip['id']} missing from the session's clips")

        self.step("session.get_clips", session_clips)

    def vod(self, file: str, url: str) -> None:
        """A file to upload and a URL to import (tests/api/clients.rs sets STUDIO_VOD_FILE and
        STUDIO_VOD_URL): asset.create, the direct upload, the upload task through task.*, the
        ready asset, and asset.create_via_url. The SDK validates the closed `type` and
        `status.phase` enums of tasks and assets."""
        lp = self.lp
        name = f"sdk-py-upload-{self.run}"

        def create() -> Any:
            data = as_json(check_success(lp.asset.create(request={"name": name, "staticMp4": True}), 200, "data"))
            for k in ("url", "tusEndpoint"):
                check(isinstance(data.get(k), str) and data[k], f"{k}: {show(data.get(k))}")
            check_subset(data["asset"], {"name": name, "source": {"type": "directUpload"}, "status": {"phase": "uploading"}}, "asset")
            return data

        created = self.step("asset.create", create)
        task_id = created["task"]["id"]

        def held() -> None:
            t = as_json(check_success(lp.task.get(task_id=task_id), 200, "task"))
            check_subset(t, {"id": task_id, "type": "upload", "status": {"phase": "pending"}}, "task")
            check((t["status"].get("updatedAt") or 0) > 0, f"task.status.updatedAt: {show(t['status'])}")

        self.step("task.get (upload, held)", held)

        def put() -> None:
            with open(file, "rb") as body:
                res = httpx.put(created["url"], content=body.read(), timeout=60)
            check(res.status_code == 200, f"PUT {created['url']}: {res.status_code} {res.text}")

        self.step("direct upload (PUT url)", put)

        def until_ready() -> Any:
            deadline = time.time() + 120
            while True:
                a = as_json(check_success(lp.asset.get(asset_id=created["asset"]["id"]), 200, "asset"))
                check(a["status"]["phase"] != "failed", f"the asset failed: {show(a['status'])}")
                if a["status"]["phase"] == "ready":
                    return a
                check(time.time() < deadline, f"the asset is still {a['status']['phase']}")
                time.sleep(0.5)

        ready = self.step("asset.get (until ready)", until_ready)
        check(any(h["algorithm"] == "sha256" for h in ready.get("hash") or []), f"asset.hash: {show(ready.get('hash'))}")

        def get_all() -> None:
            tasks = as_json(check_success(lp.task.get_all(), 200, "data"))
            listed = [t for t in tasks if t["id"] == task_id]
            check(len(listed) == 1, f"task {task_id} missing from list")
            check(listed[0]["status"]["phase"] == "completed", f"listed task: {show(listed[0]['status'])}")

        self.step("task.get_all", get_all)

        def playback() -> None:
            info = as_json(check_success(lp.playback.get(id=ready["playbackId"]), 200, "playback_info"))
            check(info["type"] == "vod", f"playbackInfo.type: {info['type']}")
            hrns = [s["hrn"] for s in info["meta"]["source"]]
            check(hrns == ["MP4", "HLS (TS)", "Thumbnails"], f"vod sources: {hrns}")

        self.step("playback.get (uploaded asset)", playback)

        def update() -> None:
            renamed = f"sdk-py-renamed-{self.run}"
            a = as_json(check_success(lp.asset.update(asset_id=ready["id"], asset_patch_payload={"name": renamed}), 200, "asset"))
            check(a["name"] == renamed, f"asset.name after update: {a['name']}")

        self.step("asset.update", update)
        self.step("asset.delete", lambda: check_success(lp.asset.delete(asset_id=ready["id"]), 204))
        self.step("asset.get (deleted -> 404)", lambda: self.expect_404(lambda: lp.asset.get(asset_id=ready["id"])))

        def via_url() -> None:
            res = lp.asset.create_via_url(request={"name": f"sdk-py-import-{self.run}", "url": url})
            data = as_json(check_success(res, 201, "two_hundred_and_one_application_json_data"))
            check_subset(data["asset"], {"source": {"type": "url", "url": url}}, "asset")

        self.step("asset.create_via_url", via_url)

        storage = os.environ.get("STUDIO_TRANSCODE_STORAGE")
        if storage:
            bucket = json.loads(storage)

            def transcode() -> Any:
                payload = {"input": {"url": url}, "storage": bucket, "outputs": {"hls": {"path": f"/sdk-py-{self.run}"}}}
                t = as_json(check_success(lp.transcode.create(request=payload), 200, "task"))
                check(t["type"] == "transcode-file", f"task.type: {t['type']}")
                check(bucket["credentials"]["secretAccessKey"] not in json.dumps(t), "the task shows the bucket's secret")
                return t

            task = self.step("transcode.create", transcode)

            def until_completed() -> None:
                deadline = time.time() + 120
                while True:
                    t = as_json(check_success(lp.task.get(task_id=task["id"]), 200, "task"))
                    check(t["status"]["phase"] != "failed", f"the transcode failed: {show(t['status'])}")
                    if t["status"]["phase"] == "completed":
                        return
                    check(time.time() < deadline, f"the transcode is still {t['status']['phase']}")
                    time.sleep(0.5)

            self.step("task.get (transcode, until completed)", until_completed)


def main() -> None:
    server_url = os.environ.get("STUDIO_API_URL")
    api_key = os.environ.get("STUDIO_API_KEY")
    if not server_url or not api_key:
        print("usage: STUDIO_API_URL=http://127.0.0.1:PORT/api STUDIO_API_KEY=<key> python conformance.py", file=sys.stderr)
        sys.exit(2)
    suite = Suite(server_url, api_key)
    suite.streams()
    suite.multistream()
    suite.webhooks()
    suite.signing_keys()
    recorded_session = os.environ.get("STUDIO_RECORDING_SESSION_ID")
    if recorded_session:
        suite.recordings(recorded_session)
    vod_file, vod_url = os.environ.get("STUDIO_VOD_FILE"), os.environ.get("STUDIO_VOD_URL")
    if vod_file and vod_url:
        suite.vod(vod_file, vod_url)
    print(f"conformance: {suite.passed} passed, 0 failed")


if __name__ == "__main__":
    main()
