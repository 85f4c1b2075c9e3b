"""Range checks of the commands' numeric flags, one message form for all of them (`sqair-eval`, `sqair-export`,
`sqair-demo`): "--k must be an integer ≥ 1, got 0".

It imports nothing heavy, so a command refuses a bad flag in a second, before TensorFlow loads.
"""

import math
from typing import Iterable, Optional, Tuple

# (flag, value, least): an integer flag that must be ≥ least.
IntegerCheck = Tuple[str, object, int]


def first_problem(integers: Iterable[IntegerCheck] = (), motion_weight: Optional[float] = None) -> Optional[str]:
    """The message of the first flag out of range, or None if all are in range.

    Args:
      integers: (flag, value, least) of integer flags, in the order to report them.
      motion_weight: `--motion-weight` (None: not given), which must be a finite number ≥ 0.
    """
    for flag, value, least in integers:
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            return f"{flag} must be an integer ≥ {least}, got {value!r}"
    if motion_weight is not None and (isinstance(motion_weight, bool) or not isinstance(motion_weight, (int, float))
                                      or not math.isfinite(motion_weight) or motion_weight < 0):
        return f"--motion-weight must be a finite number ≥ 0, got {motion_weight!r}"
    return None
