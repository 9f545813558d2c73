"""One router per resource.

Ids in paths use the ``anyid`` convertor: any characters, '/' and control characters included
(Starlette's ``path`` convertor is ``.*``, which stops at a newline), so every id accepted on
write can be read back through its path.
"""

from starlette.convertors import Convertor, register_url_convertor


class AnyIdConvertor(Convertor):
    """Matches one or more characters of any kind (newlines included)."""

    regex = r"[\s\S]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("anyid", AnyIdConvertor())
