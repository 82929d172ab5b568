"""OpenCue backend: the job spec pyoutline writes, read back as a wrangler would."""

from __future__ import annotations

import re
import shlex
import subprocess
import time
import xml.etree.ElementTree as Et

import pytest

from farmplug.errors import ConfigError
from farmplug.frames import format_frame_set, parse_frames
from farmplug.graph import farm_layers
from farmplug.integrations.base import CompileOptions, FarmConnection, SubmitError
from tests.farm_cases import cases
from tests.golden_util import check_golden

pytest.importorskip("outline", reason="pyoutline not installed (pip install 'farmplug[opencue]')")

from farmplug.integrations.opencue import FRAMESPEC, SPEC_FILE, OpenCueFarm  # noqa: E402

OPTIONS = CompileOptions()


@pytest.fixture(autouse=True)
def fixed_submitter(monkeypatch):
    """pyoutline takes show, shot and user from the environment and the uid from the OS."""
    import outline.util

    monkeypatch.setenv("SHOW", "demo")
    monkeypatch.setenv("SHOT", "shot")
    monkeypatch.setenv("USER", "wrangler")
    monkeypatch.setattr(outline.util, "get_uid", lambda: 1000)


def spec(case: str, options: CompileOptions = OPTIONS) -> Et.Element:
    text = OpenCueFarm().compile(cases()[case], options).files[SPEC_FILE]
    return Et.fromstring(text.split("?>", 1)[1].split(">", 1)[1])  # past the XML declaration and DOCTYPE


def cue_chunks(frame_range: str, chunk: int) -> list[list[int]]:
    """How Cuebot splits a layer's range into dispatched frames (chunks of the frame list)."""
    frames = parse_frames(frame_range)
    return [frames[i:i + chunk] for i in range(0, len(frames), chunk)]


@pytest.mark.parametrize("case", ["denoise", "inbetween", "hostile", "temporal", "upscale"])
def test_golden(case):
    check_golden("opencue", case, OpenCueFarm().compile(cases()[case], OPTIONS).files)


@pytest.mark.parametrize("case", ["denoise", "inbetween", "hostile", "temporal", "upscale"])
def test_every_chunk_runs_its_graph_task_exactly(case):
    graph = cases()[case]
    root = spec(case)
    layers = {layer.name: layer for layer in farm_layers(graph)}
    xml_layers = root.findall("./job/layers/layer")
    assert [x.get("name") for x in xml_layers] == list(layers)
    for xml_layer in xml_layers:
        layer = layers[xml_layer.get("name")]
        assert xml_layer.findtext("range") == layer.frame_set
        chunks = cue_chunks(xml_layer.findtext("range"), int(xml_layer.findtext("chunk")))
        assert chunks == layer.chunks
        for task, frames in zip(layer.tasks, chunks, strict=True):
            command = xml_layer.findtext("cmd").replace(FRAMESPEC, format_frame_set(frames))
            assert shlex.split(command) == ["farmplug", *task.argv]


def test_gpu_layers_ask_for_a_gpu_on_the_gpu_service():
    for xml_layer in spec("inbetween").findall("./job/layers/layer"):
        gpu = xml_layer.get("name") in {"denoise", "inbetween"}
        assert xml_layer.findtext("services/service") == ("gpu" if gpu else "cpu")
        assert xml_layer.findtext("gpus") == ("1" if gpu else None)
        assert xml_layer.findtext("gpu_memory") == ("8192m" if gpu else None)


def test_dependencies_frame_by_frame_and_the_inbetween_offset_as_layer_on_layer():
    depends = {(d.findtext("deplayer"), d.findtext("onlayer")): d.get("type") for d in spec("inbetween").find("depends")}
    assert depends == {
        ("denoise", "render"): "FRAME_BY_FRAME",
        # an inbetween chunk needs the keyframes on both sides: OpenCue cannot offset a
        # frame-by-frame dependency, so the layer waits for the whole denoise layer.
        ("inbetween", "denoise"): "LAYER_ON_LAYER",
        ("inbetween", "guide"): "FRAME_BY_FRAME",
        ("fallback", "inbetween"): "FRAME_BY_FRAME",
    }


def test_job_settings_and_no_credentials():
    root = spec("denoise", CompileOptions(job_name="sh010 v2", priority=70, max_retries=4))
    job = root.find("job")
    assert job.get("name") == "sh010_v2"
    assert (job.findtext("priority"), job.findtext("maxretries")) == ("70", "4")
    assert root.find("email") is None


def test_hostile_arguments_reach_the_program_unchanged_through_a_real_shell():
    """RQD runs the command with a shell: run each chunk's command with printf as the program."""
    graph = cases()["hostile"]
    root = spec("hostile")
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", root.find("job").get("name"))
    for xml_layer in root.findall("./job/layers/layer"):
        layer = next(ly for ly in farm_layers(graph) if ly.name == xml_layer.get("name"))
        frames = layer.chunks[0]
        command = xml_layer.findtext("cmd").replace(FRAMESPEC, format_frame_set(frames))
        assert command.startswith("farmplug ")
        shown = subprocess.run(["/bin/sh", "-c", "printf '%s\\0' " + command[len("farmplug "):]],
                               capture_output=True, check=True).stdout
        assert shown.decode().split("\0")[:-1] == layer.tasks[0].argv


def test_argument_with_a_cuebot_token_is_refused():
    graph = cases()["denoise"]
    graph = graph.model_copy(update={"tasks": [t.model_copy(update={"argv": [*t.argv, "#JOB#"]}) for t in graph.tasks]})
    with pytest.raises(ConfigError, match="OpenCue token"):
        OpenCueFarm().compile(graph, OPTIONS)


def test_submit_to_an_unreachable_cuebot_fails_fast():
    farm = OpenCueFarm()
    submission = farm.compile(cases()["denoise"], OPTIONS)
    started = time.monotonic()
    with pytest.raises(SubmitError, match="nothing launched"):
        farm.submit(submission, FarmConnection(kind="opencue", url="127.0.0.1:9", timeout_s=2))
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://admin:cue-s3cret@127.0.0.1:9", id="user-and-password"),
        pytest.param("cue-s3cret@127.0.0.1:9", id="token-as-user-without-scheme"),
    ],
)
def test_an_unreachable_cuebot_never_shows_the_credentials_of_its_url(url):
    farm = OpenCueFarm()
    with pytest.raises(SubmitError) as caught:
        farm.submit(farm.compile(cases()["denoise"], OPTIONS), FarmConnection(kind="opencue", url=url, timeout_s=2))
    message = str(caught.value)
    assert "OpenCue at 127.0.0.1:9 did not take the job" in message and "cue-s3cret" not in message
