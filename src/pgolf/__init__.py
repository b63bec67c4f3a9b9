"""pgolf: a toolkit for the OpenAI Parameter Golf challenge."""

__version__ = "0.1.0"

# Files that carry all pgolf code when it runs from a single-file export (`pgolf submit`): the code
# budget and the provenance hash count these instead of the package's source files. Empty for an
# ordinary install.
SHIPPED_CODE: tuple[str, ...] = ()
# Package data files a single-file export carries (path under the package → text), e.g. the quant policy
# its config names; readers of package data look here first.
SHIPPED_DATA: dict[str, str] = {}
