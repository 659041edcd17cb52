"""
The soak's host probe, run as its own small process (like cyclictest): it
asks to wake every 10 ms on an absolute schedule and prints, for each 10 ms
slot, how late it came to it. A slot it slept through is printed with its
own lateness when the probe wakes again, so a stall of 1 s is 100 slots
late by 10 ms to 1 s: percentiles of slots are shares of wall-clock time.

Output, one line per slot: C{<slot, CLOCK_MONOTONIC s> <lateness, ms>}.
It ends after C{argv[1]} seconds, or when its reader is gone.

    python tests/soak/hostprobe.py SECONDS
"""

import sys
import time

SLOT = 0.010  # s


def main(seconds: float) -> None:
    out = sys.stdout
    slot = time.monotonic()
    end = slot + seconds
    while slot < end:
        slot += SLOT
        time.sleep(max(0.0, slot - time.monotonic()))
        now = time.monotonic()
        lines = []
        while slot <= now:  # this slot, and any slept through since
            lines.append(f"{slot:.4f} {1000 * (now - slot):.1f}\n")
            slot += SLOT
        slot -= SLOT  # the last slot served
        out.write("".join(lines))
        out.flush()


if __name__ == "__main__":
    try:
        main(float(sys.argv[1]))
    except (BrokenPipeError, KeyboardInterrupt):
        pass
