"""The viewership and usage calls of the official Python SDK (`metrics.*`), against our server.

    STUDIO_API_URL=... STUDIO_API_KEY=... PLAYBACK_ID=... ASSET_ID=... python metrics.py

Prints one JSON object with what each call returned (after the SDK's pydantic validation); the
Rust test (tests/api/viewership.rs) checks the numbers against what its players watched.
"""
import json
import os
import time

from livepeer import Livepeer


def dump(value):
    if value is None:
        return None
    if isinstance(value, list):
        return [dump(v) for v in value]
    return value.model_dump(by_alias=True, exclude_none=True)


def main() -> None:
    lp = Livepeer(api_key=os.environ["STUDIO_API_KEY"], server_url=os.environ["STUDIO_API_URL"], timeout_ms=30_000)
    playback_id, asset_id = os.environ["PLAYBACK_ID"], os.environ["ASSET_ID"]
    now_ms = int(time.time() * 1000)
    viewership = lp.metrics.get_viewership(
        request={"playback_id": playback_id, "from_": now_ms - 86_400_000, "time_step": "day", "breakdown_by": ["browser"]}
    )
    creator = lp.metrics.get_creator_viewership(request={"asset_id": asset_id, "breakdown_by": ["deviceType"]})
    total = lp.metrics.get_public_viewership(playback_id=playback_id)
    now = lp.metrics.get_realtime_viewership(playback_id=playback_id)
    usage = lp.metrics.get_usage(request={"from_": now_ms - 86_400_000, "to": now_ms})
    print(json.dumps({
        "viewership": dump(viewership.data),
        "creator": dump(creator.data),
        "total": dump(total.data),
        "now": dump(now.data),
        "usage": dump(usage.usage_metric),
    }))


if __name__ == "__main__":
    main()
