"""Every numeric CLI argument is checked when parsed: one line on stderr, exit status 2, no traceback."""

from __future__ import annotations

import pytest

from diamond_cutter.cli import main

M = "efficientnet_lite0"
BAD = [
    ["predict", M, "chelsea", "-k", "-1"],
    ["predict", M, "chelsea", "-k", "0"],
    ["predict", M, "chelsea", "-k", "two"],
    ["attribute", M, "chelsea", "--batch-size", "0"],
    ["attribute", M, "chelsea", "--alpha", "1.5"],
    ["report", M, "chelsea", "--layer", "blocks.5", "--top", "0"],
    ["report", M, "chelsea", "--layer", "blocks.5", "--groups", "-1"],
    ["report", M, "chelsea", "--layer", "blocks.5", "--icon-size", "0"],
    ["report", M, "chelsea", "--layer", "blocks.5", "--icon-steps", "0"],
    ["visualize", M, "--layer", "blocks.1", "--out", "x", "--steps", "0"],
    ["visualize", M, "--layer", "blocks.1", "--out", "x", "--size", "-5"],
    ["visualize", M, "--layer", "blocks.1", "--out", "x", "--seed", "-1"],
    ["visualize", M, "--layer", "blocks.1", "--out", "x", "--batch-size", "0"],
    ["atlas", M, "--layers", "blocks.1", "--size", "100000"],
    ["sweep", "--models", M, "--data", "d", "--out", "o", "--val-fraction", "1"],
    ["sweep", "--models", M, "--data", "d", "--out", "o", "--n-cuts", "0"],
    ["sweep", "--models", M, "--data", "d", "--out", "o", "--shortlist", "0"],
    ["sweep", "--models", M, "--data", "d", "--out", "o", "--input-size", "0"],
    ["sweep", "--models", M, "--data", "d", "--out", "o", "--epochs", "0"],
    ["sweep", "--models", M, "--data", "d", "--out", "o", "--batch-size", "-3"],
    ["sweep", "--models", M, "--data", "d", "--out", "o", "--lr", "0"],
    ["sweep", "--models", M, "--data", "d", "--out", "o", "--lr", "nan"],
    ["sweep", "--models", M, "--data", "d", "--out", "o", "--unfreeze", "-1"],
    ["sweep", "--models", M, "--data", "d", "--out", "o", "--tolerance", "-0.1"],
    ["sweep", "--models", M, "--data", "d", "--out", "o", "--seed", str(2**40)],
    ["demo", "--icon-limit", "-1"],
    ["demo", "--icon-steps", "0"],
]


@pytest.mark.parametrize("argv", BAD, ids=[" ".join(a[0:1] + a[-2:]) for a in BAD])
def test_bad_numbers_are_one_line_errors_with_status_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: argument" in err and "Traceback" not in err
