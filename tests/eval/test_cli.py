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
