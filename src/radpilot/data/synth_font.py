"""A 5 x 7 bitmap font for burned-in text (capitals, digits, a little punctuation).

Written out here rather than taken from Pillow or matplotlib so that burned-in text is
the same pixels on every machine and needs no font files.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["GLYPH_COLUMNS", "GLYPH_ROWS", "render_text"]

GLYPH_ROWS, GLYPH_COLUMNS = 7, 5

# fmt: off
_GLYPHS = {
    "A": ".###.|#...#|#...#|#####|#...#|#...#|#...#", "B": "####.|#...#|#...#|####.|#...#|#...#|####.",  # noqa: E501
    "C": ".###.|#...#|#....|#....|#....|#...#|.###.", "D": "####.|#...#|#...#|#...#|#...#|#...#|####.",  # noqa: E501
    "E": "#####|#....|#....|####.|#....|#....|#####", "F": "#####|#....|#....|####.|#....|#....|#....",  # noqa: E501
    "G": ".###.|#...#|#....|#.###|#...#|#...#|.####", "H": "#...#|#...#|#...#|#####|#...#|#...#|#...#",  # noqa: E501
    "I": ".###.|..#..|..#..|..#..|..#..|..#..|.###.", "J": "..###|...#.|...#.|...#.|...#.|#..#.|.##..",  # noqa: E501
    "K": "#...#|#..#.|#.#..|##...|#.#..|#..#.|#...#", "L": "#....|#....|#....|#....|#....|#....|#####",  # noqa: E501
    "M": "#...#|##.##|#.#.#|#.#.#|#...#|#...#|#...#", "N": "#...#|#...#|##..#|#.#.#|#..##|#...#|#...#",  # noqa: E501
    "O": ".###.|#...#|#...#|#...#|#...#|#...#|.###.", "P": "####.|#...#|#...#|####.|#....|#....|#....",  # noqa: E501
    "Q": ".###.|#...#|#...#|#...#|#.#.#|#..#.|.##.#", "R": "####.|#...#|#...#|####.|#.#..|#..#.|#...#",  # noqa: E501
    "S": ".####|#....|#....|.###.|....#|....#|####.", "T": "#####|..#..|..#..|..#..|..#..|..#..|..#..",  # noqa: E501
    "U": "#...#|#...#|#...#|#...#|#...#|#...#|.###.", "V": "#...#|#...#|#...#|#...#|#...#|.#.#.|..#..",  # noqa: E501
    "W": "#...#|#...#|#...#|#.#.#|#.#.#|#.#.#|.#.#.", "X": "#...#|#...#|.#.#.|..#..|.#.#.|#...#|#...#",  # noqa: E501
    "Y": "#...#|#...#|.#.#.|..#..|..#..|..#..|..#..", "Z": "#####|....#|...#.|..#..|.#...|#....|#####",  # noqa: E501
    "0": ".###.|#...#|#..##|#.#.#|##..#|#...#|.###.", "1": "..#..|.##..|..#..|..#..|..#..|..#..|.###.",  # noqa: E501
    "2": ".###.|#...#|....#|...#.|..#..|.#...|#####", "3": "#####|...#.|..#..|...#.|....#|#...#|.###.",  # noqa: E501
    "4": "...#.|..##.|.#.#.|#..#.|#####|...#.|...#.", "5": "#####|#....|####.|....#|....#|#...#|.###.",  # noqa: E501
    "6": "..##.|.#...|#....|####.|#...#|#...#|.###.", "7": "#####|....#|...#.|..#..|.#...|.#...|.#...",  # noqa: E501
    "8": ".###.|#...#|#...#|.###.|#...#|#...#|.###.", "9": ".###.|#...#|#...#|.####|....#|...#.|.##..",  # noqa: E501
    " ": ".....|.....|.....|.....|.....|.....|.....", ".": ".....|.....|.....|.....|.....|.##..|.##..",  # noqa: E501
    ":": ".....|.##..|.##..|.....|.##..|.##..|.....", "-": ".....|.....|.....|#####|.....|.....|.....",  # noqa: E501
    "/": "....#|...#.|...#.|..#..|.#...|.#...|#....", "^": "..#..|.#.#.|#...#|.....|.....|.....|.....",  # noqa: E501
}
# fmt: on


def _glyph(char: str) -> npt.NDArray[np.bool_]:
    rows = _GLYPHS[char].split("|")
    return np.array([[c == "#" for c in row] for row in rows], dtype=bool)


def render_text(text: str, scale: int = 1) -> npt.NDArray[np.bool_]:
    """``text`` as a boolean bitmap, one blank column between characters.

    Raises
    ------
    ValueError
        If ``text`` is empty or holds a character the font lacks, or ``scale`` < 1.
    """
    if scale < 1:
        raise ValueError(f"scale must be at least 1, not {scale}")
    text = text.upper()
    unknown = sorted({c for c in text if c not in _GLYPHS})
    if not text or unknown:
        raise ValueError(
            f"burned-in text must be non-empty and use A-Z, 0-9, space and . : - / ^ "
            f"(not {''.join(unknown)!r})"
        )
    gap = np.zeros((GLYPH_ROWS, 1), dtype=bool)
    parts: list[npt.NDArray[np.bool_]] = []
    for index, char in enumerate(text):
        if index:
            parts.append(gap)
        parts.append(_glyph(char))
    bitmap = np.concatenate(parts, axis=1)
    return np.kron(bitmap, np.ones((scale, scale), dtype=bool)).astype(bool)
