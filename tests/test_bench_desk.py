"""bench/desk_sheet.py at a tiny size, so it cannot rot: it builds its clinic and times the
sheet and the page once. No timing is asserted."""

from bench import desk_sheet


def test_the_day_sheet_bench_runs_at_a_tiny_size(tmp_path, capsys):
    assert desk_sheet.main(["--appointments", "300", "--doctors", "3", "--runs", "1",
                            "--data", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "day sheet (desk.day_sheet): median" in out
    assert "GET /desk, server time: median" in out
