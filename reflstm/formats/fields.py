"""Typed reading of the JSON configs Keras saves: every field as the type Keras gives it.

A config read from a file is untrusted data. `Fields` reads it one field at a time, each with
the type Keras writes for it — booleans are booleans, ``units`` a positive integer, a shape a
list of positive integers or None — and refuses anything else with the field's place, so that
the rest of reflstm never sees raw JSON. (``"return_sequences": "false"`` is a string, and a
string is not a boolean: Python's ``bool("false")`` is True.)
"""

from reflstm.errors import refuse

__all__ = ["Fields", "kind_of"]

_MISSING = object()


def kind_of(value):
    """What a JSON value is, in words, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {text!r}"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)} items"
    if isinstance(value, dict):
        return f"an object with keys {', '.join(map(repr, list(value)[:6]))}"
    return type(value).__name__


class Fields:
    """One JSON object of a config, read field by field; `where` names it in every refusal."""

    def __init__(self, value, where):
        if not isinstance(value, dict):
            raise refuse(where, "a JSON object of fields", kind_of(value))
        self._values = value
        self.where = where

    def __contains__(self, key):
        return key in self._values

    def _get(self, key, default):
        value = self._values.get(key, _MISSING)
        if value is _MISSING:
            if default is _MISSING:
                raise refuse(f"{self.where}: field {key!r}", "a value", "none (the field is missing)")
            return default, True
        return value, False

    def _refuse(self, key, expected, value):
        return refuse(f"{self.where}: field {key!r}", expected, kind_of(value))

    def bool(self, key, default=False):
        value, missing = self._get(key, default)
        if not missing and not isinstance(value, bool):
            raise self._refuse(key, "a boolean (true or false)", value)
        return value

    def int(self, key, default=_MISSING, minimum=None, optional=False, maximum=None):
        value, missing = self._get(key, default)
        if missing or (optional and value is None):
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._refuse(key, "an integer" + (" or null" if optional else ""), value)
        if minimum is not None and value < minimum:
            raise self._refuse(key, f"an integer of at least {minimum}", value)
        if maximum is not None and value > maximum:
            raise self._refuse(key, f"an integer of at most {maximum:,}", value)
        return value

    def number(self, key, default=_MISSING):
        value, missing = self._get(key, default)
        if not missing and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise self._refuse(key, "a number", value)
        return value

    def str(self, key, default=_MISSING, choices=None, optional=False):
        value, missing = self._get(key, default)
        if missing or (optional and value is None):
            return value
        if not isinstance(value, str):
            raise self._refuse(key, "a string" + (" or null" if optional else ""), value)
        if choices is not None and value not in choices:
            raise self._refuse(key, f"one of {', '.join(map(repr, choices))}", value)
        return value

    def list(self, key, default=_MISSING):
        value, missing = self._get(key, default)
        if missing:
            return value
        if not isinstance(value, (list, tuple)):  # a live model's get_config() gives tuples
            raise self._refuse(key, "a list", value)
        return list(value)

    def object(self, key, default=_MISSING):
        """A nested JSON object as Fields (or `default` when the field is missing or null)."""
        value, missing = self._get(key, default)
        if missing or (value is None and default is not _MISSING):
            return value
        return Fields(value, f"{self.where}: field {key!r}")

    def raw_dict(self):
        """The whole object, for a caller that checks its fields itself."""
        return self._values

    def raw(self, key, default=None):
        """A field whose several accepted forms the caller checks itself."""
        return self._values.get(key, default)

    def shape(self, key):
        """A saved shape: a list whose first entry (the batch) may be null, the rest positive
        integers or null; None when the field is missing or null."""
        value, _ = self._get(key, None)
        if value is None:
            return None
        if not isinstance(value, (list, tuple)) or not value or not all(
            v is None or (isinstance(v, int) and not isinstance(v, bool) and v > 0) for v in value
        ):
            raise self._refuse(key, "a shape: a list of positive integers or nulls", value)
        return tuple(value)
