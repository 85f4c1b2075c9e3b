"""Throughput of `sqair-track` on a video (issue 14 target: ≥ 10 video frames per second on a 2-core machine).

    python benchmarks/bench_track.py VIDEO [--model pedestrians] [--k 5] [--every 5] [--window 5] [--repeats 3]

Runs the whole tracker (background subtraction of every frame, tiling, windowed inference, MOT/JSON output) `--repeats`
times with the annotated video off, and once more with the GIF on, and reports video frames per second (frames read
÷ wall time) for each, with the median. The first run includes tracing the model's `track_window` function; the
median over the repeats is the steady figure.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video")
    parser.add_argument("--model", default="pedestrians")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from tools import track

    began = time.perf_counter()
    tracker = track.load_tracker(args.model, args.k)
    print(f"model {tracker.source}: loaded in {time.perf_counter() - began:.1f} s")
    rates = []
    with tempfile.TemporaryDirectory() as out:
        for repeat in range(args.repeats + 1):
            video_out = "gif" if repeat == args.repeats else "none"
            config = track.TrackConfig(every=args.every, window=args.window, num_particles=args.k,
                                       video_out=video_out)
            summary = track.track_video(args.video, tracker, config, os.path.join(out, str(repeat)))
            print(f"run {repeat + 1} ({video_out} video): {summary['video_frames_read']} video frames, "
                  f"{summary['tracked_frames']} tracked × {summary['tiles']} tiles, {summary['seconds']:.1f} s = "
                  f"{summary['video_frames_per_second']:.1f} video frames/s "
                  f"({summary['tracked_frames_per_second']:.2f} tracked frames/s), {summary['tracks']} tracks")
            if video_out == "none":
                rates.append(summary["video_frames_per_second"])
    print(f"median over {len(rates)} runs without the GIF: {statistics.median(rates):.1f} video frames/s "
          f"(K = {args.k}, every {args.every}, window {args.window})")


if __name__ == "__main__":
    main()
