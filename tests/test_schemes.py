"""Sampling schemes: the reference's stage lists, validity over a parameter grid, user schemes,
schedule files, YAML files, the picture and the `flexvid schemes` command."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from PIL import Image

from flexvid.cli.main import main
from flexvid.errors import SchemeError
from flexvid.schemes import (
    SamplingScheme,
    get_scheme,
    register_scheme,
    registry,
    render_scheme_png,
    scheme_names,
    scheme_stages,
    validate_stages,
)
from flexvid.schemes.visualise import COLOURS

PAPER_SCHEMES = ["autoreg", "long-range", "only-obs", "hierarchy-2", "hierarchy-3", "hierarchy-4", "hierarchy-5"]


def stages_of(name: str, T: int, n_obs: int, K: int, step: int, **options):
    return scheme_stages(name, video_length=T, num_observed_frames=n_obs, max_frames=K, step_size=step, **options)


def check_valid(stages, T: int, n_obs: int, K: int) -> None:
    """An independent check of the scheme rules (not via validate_stages)."""
    done = set(range(n_obs))
    for obs, latent in stages:
        assert latent, "a stage must generate something"
        assert len(obs) + len(latent) <= K
        assert set(obs) <= done, "observed a frame before it existed"
        assert not set(latent) & done, "generated a frame twice"
        assert all(0 <= i < T for i in latent)
        done |= set(latent)
    assert done == set(range(T))


# ---- the reference's stage lists ----


def golden_cases(reference_dir):
    return json.loads((reference_dir / "scheme_goldens.json").read_text())


def test_goldens_match_reference(reference_dir):
    cases = golden_cases(reference_dir)
    assert len(cases) >= 15
    for case in cases:
        params = (case["scheme"], case["video_length"], case["num_obs"], case["max_frames"], case["step_size"])
        if case.get("error"):
            with pytest.raises(SchemeError):
                stages_of(*params)
            continue
        stages = stages_of(*params)
        expected = [(set(s["obs"]), set(s["latent"])) for s in case["stages"]]
        assert [(set(s.obs), set(s.latent)) for s in stages] == expected, params


# ---- validity for any parameters ----

GRID = [
    (T, n_obs, K, step)
    for T in (1, 2, 3, 5, 8, 13, 21, 40, 77)
    for K in (2, 3, 4, 6, 9, 16)
    for step in range(1, K)
    for n_obs in sorted({0, 1, 2, K - 1, K, T - 1, T})
    if 0 <= n_obs <= T
]


@pytest.mark.parametrize("name", PAPER_SCHEMES)
def test_every_parameter_combination_is_valid_or_a_clear_error(name):
    valid = 0
    for T, n_obs, K, step in GRID:
        try:
            stages = stages_of(name, T, n_obs, K, step)
        except SchemeError as err:
            message = str(err)
            assert message.endswith(".") and "\n" not in message
            assert "T=" in message or "step_size" in message or "max_frames" in message
            continue
        check_valid(stages, T, n_obs, K)
        valid += 1
    assert valid > len(GRID) // 3  # most combinations work


def test_unconditional_first_stage():
    first = stages_of("autoreg", 50, 0, 8, 4)[0]
    assert first.obs == () and first.latent == tuple(range(8))
    first = stages_of("hierarchy-2", 50, 0, 8, 4)[0]
    assert first.obs == () and len(first.latent) == 8 and first.latent[0] == 0 and first.latent[-1] == 49


def test_autoreg_conditions_on_latest_frames():
    stages = stages_of("autoreg", 30, 5, 8, 3)
    for previous, stage in itertools.pairwise(stages):
        assert max(stage.obs) + 1 == min(stage.latent)
        assert set(previous.latent) <= set(stage.obs)


def test_only_obs_conditions_on_observed_frames_only():
    for stage in stages_of("only-obs", 40, 6, 8, 4):
        assert set(stage.obs) == {2, 3, 4, 5}
    unconditional = stages_of("only-obs", 40, 0, 8, 4)
    assert all(set(stage.obs) == {4, 5, 6, 7} for stage in unconditional[1:])


def test_all_frames_observed_gives_no_stages():
    assert stages_of("hierarchy-2", 10, 10, 6, 3) == []


# ---- errors the user can hit ----


def test_unknown_scheme_lists_known_ones():
    with pytest.raises(SchemeError, match=r"Unknown sampling scheme 'spiral'.*autoreg.*hierarchy-2"):
        get_scheme("spiral", video_length=10, num_observed_frames=2, max_frames=4, step_size=2)


def test_n_obs_larger_than_video():
    with pytest.raises(SchemeError, match="n_obs=40 is larger than the video length T=30"):
        stages_of("autoreg", 30, 40, 8, 4)


@pytest.mark.parametrize("name", PAPER_SCHEMES)
@pytest.mark.parametrize("step", [8, 9])
def test_step_size_not_smaller_than_max_frames(name, step):
    with pytest.raises(SchemeError, match=f"step_size={step} must be smaller than max_frames=8"):
        stages_of(name, 30, 4, 8, step)


@pytest.mark.parametrize(
    "name, params, match",
    [
        # The reference divides by step_size - 1 (ZeroDivisionError).
        ("hierarchy-2", (30, 4, 8, 1), "need step_size >= 2"),
        # The reference shrinks the step down to 1 and then divides by zero.
        ("hierarchy-2", (2, 1, 3, 2), "too many done frames lie between"),
        # The reference finds no latent frame and fails on min([]).
        ("hierarchy-4", (4, 1, 4, 2), "jumps past the remaining frames"),
        # The reference's first stage runs past the end of the video (assertion).
        ("autoreg", (5, 0, 8, 4), "cannot start without observed frames"),
        # With a single slot the reference conditions on every done frame, overflowing K.
        ("long-range", (30, 4, 8, 7), "conditioning slots"),
    ],
)
def test_parameters_the_reference_cannot_handle(name, params, match):
    with pytest.raises(SchemeError, match=match):
        stages_of(name, *params)


# ---- validate_stages ----

GOOD = [([0, 1], [2, 3]), ([2, 3], [4, 5])]


def test_validate_accepts_good_stages():
    stages = validate_stages(GOOD, video_length=6, num_observed_frames=2, max_frames=4)
    assert [tuple(s) for s in stages] == [((0, 1), (2, 3)), ((2, 3), (4, 5))]


@pytest.mark.parametrize(
    "stages, match",
    [
        ([([0, 1], [2, 3]), ([3], [3, 4, 5])], r"stage 1 both observes and generates frames 3"),
        ([([0, 1], [2, 3]), ([2], [3, 4, 5])], r"stage 1 generates frames 3 that are already"),
        ([([0, 4], [2, 3]), ([2, 3], [4, 5])], r"stage 0 conditions on frames 4 before they exist"),
        ([([0, 1], [2, 3, 4]), ([2, 3], [5])], r"stage 0 uses 5 frames .* more than max_frames=4"),
        ([([0, 1], [2, 3])], r"frames 4, 5 are never generated"),
        ([([0, 1], [2, 3]), ([2, 3], [4, 6])], r"outside the video"),
        ([([0, 1], [2, 2]), ([2, 3], [4, 5])], r"more than once"),
        ([([0, 1], [])], r"generates no frames"),
        ([{"obs": [0], "latents": [2]}], r"exactly the keys 'obs' and 'latent'"),
    ],
)
def test_validate_reports_first_violation(stages, match):
    with pytest.raises(SchemeError, match=match):
        validate_stages(stages, video_length=6, num_observed_frames=2, max_frames=4)


# ---- optimized: observed frames from a schedule file ----


def test_optimized_reads_torch_and_json_schedules(tmp_path):
    base = stages_of("hierarchy-2", 40, 5, 8, 4)
    schedule = {number: list(stage.obs[1:]) for number, stage in enumerate(base)}  # drop one frame per stage
    torch.save(schedule, tmp_path / "optimal_schedule.pt")
    (tmp_path / "schedule.json").write_text(json.dumps({str(k): v for k, v in schedule.items()}))
    for path in (tmp_path / "optimal_schedule.pt", tmp_path / "schedule.json"):
        stages = stages_of("optimized", 40, 5, 8, 4, schedule=path, base="hierarchy-2")
        assert [s.latent for s in stages] == [s.latent for s in base]
        assert [list(s.obs) for s in stages] == [schedule[n] for n in range(len(base))]


def test_optimized_uses_schedule_obs_and_base_latents(tmp_path):
    base = stages_of("autoreg", 20, 4, 6, 2)
    schedule = {number: [0, 1] + list(stage.obs[-1:]) for number, stage in enumerate(base)}
    path = tmp_path / "optimal_schedule.pt"
    torch.save(schedule, path)
    stages = stages_of("optimized", 20, 4, 6, 2, schedule=path)
    assert [s.latent for s in stages] == [s.latent for s in base]
    assert [set(s.obs) for s in stages] == [set(schedule[n]) for n in range(len(base))]


def test_schedule_conditioning_on_future_frames_is_rejected(tmp_path):
    path = tmp_path / "schedule.json"
    path.write_text(json.dumps({"0": [0, 1], "1": [0, 15]}))
    with pytest.raises(SchemeError, match=r"stage 1 conditions on frames 15 before they exist"):
        stages_of("optimized", 20, 4, 6, 2, schedule=path)


def test_schedule_missing_stage_warns_and_observes_nothing(tmp_path):
    path = tmp_path / "schedule.json"
    path.write_text(json.dumps({"0": [2, 3]}))
    with pytest.warns(UserWarning, match="stage 1 is not in the schedule"):
        stages = stages_of("optimized", 8, 4, 6, 2, schedule=path)
    assert stages[0].obs == (2, 3) and stages[1].obs == ()


def test_schedule_unconditional_first_stage_kept(tmp_path):
    path = tmp_path / "schedule.json"
    path.write_text(json.dumps({"0": [0], "1": [0, 1], "2": [4, 5]}))
    stages = stages_of("optimized", 8, 0, 4, 2, schedule=path)
    assert stages[0].obs == () and stages[0].latent == (0, 1, 2, 3)
    assert stages[1].obs == (0, 1)


@pytest.mark.parametrize("content, match", [("[1, 2]", "must hold a dict"), ('{"a": 3}', "stage number to a list")])
def test_bad_schedule_files(tmp_path, content, match):
    path = tmp_path / "schedule.json"
    path.write_text(content)
    with pytest.raises(SchemeError, match=match):
        stages_of("optimized", 8, 4, 6, 2, schedule=path)
    with pytest.raises(SchemeError, match="does not exist"):
        stages_of("optimized", 8, 4, 6, 2, schedule=tmp_path / "missing.pt")


# ---- user schemes in Python ----


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations made by a test are undone afterwards."""
    monkeypatch.setattr(registry, "_SCHEMES", dict(registry._SCHEMES))


def test_user_subclass_registered_by_name(scratch_registry):
    @register_scheme("first-and-latest")
    class FirstAndLatest(SamplingScheme):
        description = "next frames, conditioned on frame 0 and the latest frame"

        def choose_stage(self):
            first = max(self.done) + 1
            return [0, first - 1], range(first, min(first + self.step_size, self.video_length))

    assert "first-and-latest" in scheme_names()
    stages = stages_of("first-and-latest", 12, 2, 5, 3)
    check_valid(stages, 12, 2, 5)
    assert all(0 in s.obs for s in stages)

    class Other(FirstAndLatest):
        pass

    with pytest.raises(SchemeError, match="already registered"):
        register_scheme("first-and-latest")(Other)


def test_user_subclass_breaking_rules_is_caught(scratch_registry):
    @register_scheme("peeks-ahead")
    class PeeksAhead(SamplingScheme):
        def choose_stage(self):
            first = max(self.done) + 1
            return [first + 1], [first]

    with pytest.raises(SchemeError, match=r"peeks-ahead .* stage 0 conditions on frames 4 before they exist"):
        stages_of("peeks-ahead", 10, 3, 4, 1)


# ---- YAML schemes ----


def test_yaml_explicit_stages(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(
        "video_length: 6\nnum_observed_frames: 2\nmax_frames: 4\n"
        "stages:\n  - {obs: [0, 1], latent: [2, 5]}\n  - {obs: [1, 2, 5], latent: [3]}\n"
        "  - {obs: [3, 5], latent: [4]}\n"
    )
    stages = scheme_stages(path)
    assert [(s.obs, s.latent) for s in stages] == [((0, 1), (2, 5)), ((1, 2, 5), (3,)), ((3, 5), (4,))]
    assert scheme_stages(str(path), video_length=6, num_observed_frames=2, max_frames=4) == stages


def test_yaml_builtin_with_parameters(tmp_path):
    path = tmp_path / "h2.yaml"
    path.write_text("scheme: hierarchy-2\nvideo_length: 60\nnum_observed_frames: 6\nmax_frames: 10\n")
    assert scheme_stages(path, step_size=5) == stages_of("hierarchy-2", 60, 6, 10, 5)
    with pytest.raises(SchemeError, match="sets video_length=60 but 80 was requested"):
        scheme_stages(path, video_length=80, step_size=5)
    with pytest.raises(SchemeError, match="does not set step_size"):
        scheme_stages(path)


def test_example_scheme_files_are_valid(request):
    folder = request.config.rootpath / "configs" / "schemes"
    files = sorted(folder.glob("*.yaml"))
    assert files
    for path in files:
        scheme = get_scheme(path)
        check_valid(scheme_stages(path), scheme.video_length, scheme.num_observed_frames, scheme.max_frames)


@pytest.mark.parametrize(
    "text, match",
    [
        ("- 1\n- 2\n", "must hold a mapping"),
        ("video_length: 4\nstages: [{obs: [], latent: [0]}]\nscheme: autoreg\n", "exactly one of 'stages'"),
        ("video_length: 4\n", "exactly one of 'stages'"),
        (
            "video_length: 4\nnum_observed_frames: 0\nmax_frames: 4\nstage: []\nstages: []\n",
            r"unknown keys \['stage'\]",
        ),
        ("video_length: 4\nnum_observed_frames: 0\nmax_frames: 4\nstages: {obs: [], latent: [0]}\n", "must be a list"),
        (
            "video_length: 4\nnum_observed_frames: 0\nmax_frames: 4\nstages: [{obs: []}]\n",
            "exactly the keys 'obs' and 'latent'",
        ),
        (
            "video_length: 4\nnum_observed_frames: 0\nmax_frames: 4\nstages: [{obs: [], latent: [a]}]\n",
            "integer frame indices",
        ),
        (
            "video_length: 4\nnum_observed_frames: 0\nmax_frames: 4\nstages: [{obs: [1], latent: [0]}]\n",
            "before they exist",
        ),
        (
            "video_length: 4\nnum_observed_frames: 0\nmax_frames: 4\nstages: [{obs: [], latent: [0, 1]}]\n",
            "never generated",
        ),
        ("stages: [{obs: [], latent: [0]}\n", "not valid YAML at line"),
        (
            "scheme: spiral\nvideo_length: 9\nnum_observed_frames: 1\nmax_frames: 4\nstep_size: 2\n",
            "Unknown sampling scheme",
        ),
        (
            "scheme: autoreg\nvideo_length: 9\nnum_observed_frames: 1\nmax_frames: 4\nstep_size: 2\nlevels: 3\n",
            "cannot take",
        ),
        (
            "scheme: autoreg\nvideo_length: ten\nnum_observed_frames: 1\nmax_frames: 4\nstep_size: 2\n",
            "must be an integer",
        ),
        (
            "scheme: autoreg\nvideo_length: '24'\nnum_observed_frames: 1\nmax_frames: 4\nstep_size: 2\n",
            r"sets video_length to '24'; it must be an integer, written without quotes",
        ),
    ],
)
def test_bad_yaml_files(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SchemeError, match=match):
        scheme_stages(path)


def test_missing_yaml_file(tmp_path):
    with pytest.raises(SchemeError, match="does not exist"):
        get_scheme(tmp_path / "nope.yaml")


# ---- picture ----


def test_png_colours_follow_stages(tmp_path):
    stages = stages_of("hierarchy-2", 12, 2, 6, 3)
    path = render_scheme_png(stages, 12, tmp_path / "pic.png")
    image = Image.open(path).convert("RGB")
    assert image.height > len(stages) * 3
    found = set()
    done = {0, 1}
    margin, cell_w, cell_h = 8, 16, 16
    for row, stage in enumerate(stages):
        for frame in range(12):
            kind = (
                "observed"
                if frame in stage.obs
                else "latent"
                if frame in stage.latent
                else "done"
                if frame in done
                else "untouched"
            )
            pixel = image.getpixel((margin + frame * cell_w + cell_w // 2, margin + row * cell_h + cell_h // 2))
            assert pixel == COLOURS[kind], (row, frame, kind)
            found.add(kind)
        done |= set(stage.latent)
    assert found == set(COLOURS)


def test_png_of_a_very_long_video_is_capped_and_shares_cells(tmp_path):
    from flexvid.schemes.visualise import MAX_ROWS, MAX_WIDTH

    T = 32_000
    stages = stages_of("autoreg", T, 36, 20, 10)
    image = Image.open(render_scheme_png(stages, T, tmp_path / "long.png")).convert("RGB")
    assert image.width <= MAX_WIDTH + 16 and image.height <= 3 * MAX_ROWS + 60
    # A cell holds 22 frames and 16 stages. Stages 0-15 observe frames from 26 on and generate frames
    # from 36 on, so the second cell of the first row (frames 22-43) shows red; the last column's first
    # row holds only frames not generated yet, and the first cell of the last row only unused frames.
    frames_per_cell, stages_per_row = -(-T // MAX_WIDTH), -(-len(stages) // MAX_ROWS)
    columns = -(-T // frames_per_cell)
    margin, cell_w, cell_h = 8, 1, 3
    assert image.getpixel((margin + 1 * cell_w, margin + 1)) == COLOURS["latent"]  # frames 22-43
    assert image.getpixel((margin + (columns - 1) * cell_w, margin + 1)) == COLOURS["untouched"]
    last_row = margin + (-(-len(stages) // stages_per_row) - 1) * cell_h + 1
    assert image.getpixel((margin, last_row)) == COLOURS["done"]


# ---- `flexvid schemes` ----


def test_cli_lists_schemes(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["schemes"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in PAPER_SCHEMES + ["optimized"]:
        assert name in out


def test_cli_show_json_writes_no_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["schemes", "show", "hierarchy-2", "--T", "30", "--n_obs", "4", "--max_frames", "8", "--json"])
    assert exit_info.value.code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == [s.to_dict() for s in stages_of("hierarchy-2", 30, 4, 8, 4)]
    assert list(tmp_path.iterdir()) == []  # pictures only where asked, with --out


def test_cli_show_text_and_errors(tmp_path, capsys):
    out = tmp_path / "a.png"
    with pytest.raises(SystemExit):
        main(
            [
                "schemes",
                "show",
                "autoreg",
                "--T",
                "12",
                "--n_obs",
                "2",
                "--max_frames",
                "6",
                "--max_latent_frames",
                "3",
                "--out",
                str(out),
            ]
        )
    text = capsys.readouterr().out
    assert "stage   0: observe [0, 1] -> generate [2, 3, 4]" in text and out.is_file()
    for argv, match in [
        (["schemes", "show", "spiral"], "Unknown sampling scheme 'spiral'"),
        (["schemes", "show", "autoreg", "--T", "10", "--n_obs", "20"], "n_obs=20 is larger"),
        (["schemes", "show", "autoreg", "--max_frames", "8", "--max_latent_frames", "8"], "must be smaller"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main(argv + ["--out", str(tmp_path / "b.png")])
        assert exit_info.value.code == 2
        assert match in capsys.readouterr().err


def test_one_frame_per_call_is_named_as_the_problem(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["schemes", "show", "autoreg", "--T", "20", "--n_obs", "2", "--max_frames", "1"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "max_frames=1 leaves no room" in error and "step_size" not in error
