"""Processing with the default, relative ``CRAFTREEL_VAR_DIR`` (``var``, as ``make run`` has
it): every other test gives an absolute one, which hid a path joined twice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from craftreel.config import Settings
from tests.factories import sign_up
from tests.media import media_factory
from tests.media.test_pipeline import processed, upload

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture
def settings(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.chdir(tmp_path)
    return settings.model_copy(update={"var_dir": Path("var")})


async def test_a_video_is_processed_when_the_var_dir_is_relative(
    app: Any, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    maker = await sign_up(client, "relative")
    source = media_factory.landscape_video(tmp_path, seconds=1)
    media_id = await upload(client, maker, source, "video", chunk=4 * 1024 * 1024)
    media = await processed(app, client, maker, media_id)
    assert media["status"] == "ready", media
    assert media["playable"] is True
    master = await client.get(media["playback_url"])
    assert master.status_code == 200
    assert "#EXT-X-STREAM-INF" in master.text
