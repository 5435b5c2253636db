from hybridmem.cli import main
from hybridmem.world.layout import write_clip

from .test_protocol import make_clip


def test_eval_then_report_with_paper_comparison(tmp_path, capsys):
    data, out = tmp_path / "data", tmp_path / "eval"
    write_clip(make_clip(3), data / "test" / "000000")
    common = ["--data", str(data), "--out", str(out), "--weights-dir", str(tmp_path / "none")]
    assert (
        main(["eval", "--baseline", "copy-last", "--num-clips", "1", "--side-by-side-clips", "0", *common])
        == 0
    )
    printed = capsys.readouterr().out
    assert "| copy-last |" in printed and "not computed" in printed
    assert "DSC definition (`--dsc-definition`): official" in printed
    (out / "report.md").unlink()
    assert main(["eval", "report", str(out), "--compare-paper"]) == 0
    printed = capsys.readouterr().out
    assert (out / "report.md").is_file() and (out / "compare_paper.md").is_file()
    assert "| paper: HyDRA | 20.357 | 0.606 | 0.289 | 0.827 | 0.849 | 0.926 | 0.932 |" in printed
    assert "| ours: copy-last |" in printed and "not directly comparable" in printed


def test_bad_flags_exit_2_with_valid_names(tmp_path, capsys):
    data = tmp_path / "data"
    write_clip(make_clip(4), data / "test" / "000000")
    code = main(["eval", "--baseline", "nope", "--data", str(data), "--out", str(tmp_path / "o")])
    assert code == 2 and "copy-last" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert main(["eval", "report", str(tmp_path / "missing")]) == 2
    assert "aggregate.json" in capsys.readouterr().err
    try:
        main(["eval", "--baseline", "copy-last"])
    except SystemExit as stop:
        assert stop.code == 2
    else:
        raise AssertionError("missing --data/--out must exit 2")


def test_per_subject_definition_and_report_of_an_older_run(tmp_path, capsys):
    """--dsc-definition per-subject is recorded; `eval report` rebuilds per-clip numbers from clips/ when an
    older aggregate.json lacks them, and pairs against --reference."""
    import json

    data, out = tmp_path / "data", tmp_path / "eval"
    for index in range(2):
        write_clip(make_clip(index), data / "test" / f"{index:06d}")
    command = ["eval", "--baseline", "copy-last", "--side-by-side-clips", "0", "--data", str(data)]
    command += ["--out", str(out), "--weights-dir", str(tmp_path / "none"), "--dsc-definition", "per-subject"]
    assert main(command) == 0
    aggregate = json.loads((out / "aggregate.json").read_text())
    assert aggregate["dsc_definition"] == "per-subject"
    # a second method by hand (as if evaluated), and the per-clip table dropped as in older runs
    for path in (out / "clips" / "copy-last").glob("*.json"):
        record = json.loads(path.read_text())
        record["psnr"] += 1.0
        (out / "clips" / "other").mkdir(exist_ok=True)
        (out / "clips" / "other" / path.name).write_text(json.dumps(record))
    aggregate["methods"]["other"] = aggregate["methods"]["copy-last"]
    del aggregate["per_clip"]
    (out / "aggregate.json").write_text(json.dumps(aggregate))
    capsys.readouterr()
    assert main(["eval", "report", str(out), "--reference", "other"]) == 0
    printed = capsys.readouterr().out
    assert "| copy-last | PSNR | +1.00 | [+1.00, +1.00] | 2 | 0 | 2 |" in printed
    assert "per_clip" in json.loads((out / "aggregate.json").read_text())
    assert main(["eval", "report", str(out), "--reference", "nope"]) == 2
