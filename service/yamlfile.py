"""YAML files that people edit: parse them keeping line numbers for error messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class YamlDocument:
    """A parsed YAML file that can say on which line a value stands."""

    def __init__(self, file: Path | str, text: str) -> None:
        self.file = str(file)
        self.root = yaml.compose(text)
        self.data: Any = yaml.safe_load(text)

    @classmethod
    def read(cls, file: Path) -> YamlDocument:
        return cls(file, file.read_text())

    def line(self, path: tuple[Any, ...]) -> int | None:
        """The 1-based line of the value at path, or of its deepest existing parent."""
        node, line = self.root, None
        for part in path:
            if node is None:
                break
            line = node.start_mark.line + 1
            if isinstance(node, yaml.MappingNode):
                node = next((v for k, v in node.value if k.value == part), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                node = node.value[part]
            else:
                node = None
        if node is not None:
            line = node.start_mark.line + 1
        return line

    def where(self, path: tuple[Any, ...]) -> str:
        """'file line N: a.b[0].c' for messages."""
        dotted = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in path).replace(".[", "[")
        line = self.line(path)
        return self.file + (f" line {line}" if line else "") + (f": {dotted}" if dotted else "")


def yaml_error_message(file: Path | str, error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    at = f" line {mark.line + 1}" if mark else ""
    return f"{file}{at}: not valid YAML ({getattr(error, 'problem', None) or error})"
