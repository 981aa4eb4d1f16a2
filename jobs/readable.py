"""Numbers as people read them in log lines and event details (the JSON files keep full precision)."""


def percent(value) -> str:
    """A fraction as a percentage with 2 decimals; "-" for None."""
    return "-" if value is None else f"{100 * value:.2f}%"


def readable(key: str, value) -> str:
    """`value` of field `key`, rounded by what it measures: accuracy as a percentage, losses to 4 digits,
    rates whole, seconds to 2 decimals; nested dicts inline."""
    if value is None:
        return "-"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={readable(k, v)}" for k, v in value.items()) + "}"
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    if key.endswith("accuracy"):
        return percent(value)
    if key.endswith("loss"):
        return f"{value:.4f}"
    if key.endswith(("per_sec", "img_s")):
        return f"{value:.0f}"
    if key == "seconds" or key.endswith("_seconds"):
        return f"{value:.2f}"
    return f"{value:.4g}"


def readable_fields(record: dict, skip: tuple = ()) -> str:
    """`key value key value ...`: a plain, greppable line."""
    return " ".join(f"{key} {readable(key, value)}" for key, value in record.items() if key not in skip)


def label(key: str) -> str:
    """A field's name for a heading: "val_accuracy" -> "validation accuracy", "images_per_sec" -> "images/s"."""
    if key == "lr":
        return "learning rate"
    if key.startswith("val_"):
        key = "validation_" + key[len("val_"):]
    return key.replace("_per_sec", "/s").replace("_", " ")


UNIT_SHORT = {"images": "img", "tokens": "tok"}


def per_second(unit: str) -> str:
    """A rate's unit in a narrow cell or a progress line: "img/s", "tok/s", "samples/s"."""
    return f"{UNIT_SHORT.get(unit, unit)}/s"
