#!/usr/bin/env python3
"""Prints the fenced block that follows the README line starting `<!-- NAME:`.

CI runs the README's blocks as written (the SDK recipe and example, the walk
through the API), so that the README cannot drift from what works.
Usage: readme-block.py README NAME
"""
import sys

readme, name = sys.argv[1], sys.argv[2]
lines = open(readme, encoding="utf-8").read().splitlines()
marker = f"<!-- {name}:"
start = next(i for i, line in enumerate(lines) if line.startswith(marker))
fence = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("```"))
end = next(i for i in range(fence + 1, len(lines)) if lines[i].startswith("```"))
print("\n".join(lines[fence + 1 : end]))
