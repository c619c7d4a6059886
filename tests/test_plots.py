import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from cflkit import plots  # noqa: E402


def test_save_writes_pdf_and_png_without_suffix_and_one_file_with(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    both = plots.save(fig, tmp_path / "fig")
    assert sorted(p.name for p in both) == ["fig.pdf", "fig.png"]
    assert (tmp_path / "fig.pdf").read_bytes().startswith(b"%PDF")
    assert plots.save(fig, tmp_path / "only.svg") == [tmp_path / "only.svg"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.pdf", "fig.png", "only.svg"]


def test_pdf_fonts_are_embedded_truetype(tmp_path):
    fig, ax = plt.subplots()
    ax.set_title("accuracy")
    plots.save(fig, tmp_path / "t.pdf")
    data = (tmp_path / "t.pdf").read_bytes()
    # fonttype 42: TrueType outlines (matplotlib writes them as CIDFontType2), never Type 3
    assert (b"/CIDFontType2" in data or b"/TrueType" in data) and b"/Type3" not in data


def test_a_failed_save_leaves_no_file_behind(tmp_path, monkeypatch):
    fig, _ = plt.subplots()
    monkeypatch.setattr(fig, "savefig", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError):
        plots.save(fig, tmp_path / "x.pdf")
    assert list(tmp_path.iterdir()) == []
