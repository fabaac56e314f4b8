#encoding: utf-8
"""``prepId`` and friends from Zenoss's ``Products.ZenUtils.Utils``, for zenpython
plugins that build component ids (docs/MIGRATING.md)."""

import re

_BAD_ID_CHARS = re.compile(r"[^a-zA-Z0-9-_,.$\(\) ]")


def prepId(id, subchar="_"):
    """Make ``id`` a valid Zenoss object id: characters outside the allowed set become
    ``subchar``, runs of them collapse to one, leading/trailing ones go."""
    if id is None:
        raise ValueError("Ids can not be None")
    if isinstance(id, bytes):
        id = id.decode("utf-8", "replace")
    id = str(id)
    id = _BAD_ID_CHARS.sub(subchar, id).replace("/", subchar)
    if subchar:
        doubled = subchar + subchar
        while doubled in id:
            id = id.replace(doubled, subchar)
        while id.startswith(subchar) or id.startswith(" "):
            id = id[1:]
        while id.endswith(subchar) or id.endswith(" "):
            id = id[:-1]
    if not id:
        id = "-"
    return id


def convToUnits(number=0, divby=1024.0, unitstr="B"):
    """``1536`` -> ``"1.5KB"``, as Zenoss's helper does."""
    units = ("", "K", "M", "G", "T", "P")
    number = float(number)
    index = 0
    while abs(number) >= divby and index < len(units) - 1:
        number /= divby
        index += 1
    return "%.1f%s%s" % (number, units[index], unitstr)
