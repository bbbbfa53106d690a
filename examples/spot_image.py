"""Read the words in one image with the shipped weights.

    python examples/spot_image.py sign.jpg
"""

import sys

import clipspot


def main(path: str) -> None:
    spotter = clipspot.Spotter.load()  # loads once; reuse it for every image
    words = spotter.spot([clipspot.read_image(path)])[0]
    for word in sorted(words, key=lambda w: (w.polygon[:, 1].min(), w.polygon[:, 0].min())):
        x, y = word.polygon.mean(axis=0)
        print(f"{word.text!r:>16}  score {word.score:.2f}  at ({x:.0f}, {y:.0f})")
    print(f"{len(words)} words in {path}")


if __name__ == "__main__":
    main(sys.argv[1])
