"""Writes a short VP8 WebM (with cues, so a browser can seek in it) to the
path given: a moving bar over a colour that changes each second, so that
frames at different times differ. PyAV is already in the test venv (aiortc
needs it); the browser tests use this for a video shared in chat."""

import sys

import av
import numpy as np

SECONDS, FPS, W, H = 4, 10, 160, 120


def main(path: str) -> None:
    with av.open(path, "w", format="webm") as out:
        stream = out.add_stream("libvpx", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for i in range(SECONDS * FPS):
            img = np.zeros((H, W, 3), dtype=np.uint8)
            img[:, :] = ((i // FPS) * 60 % 256, 80, 160)
            x = (i * 4) % W
            img[:, x : x + 8] = 255
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


if __name__ == "__main__":
    main(sys.argv[1])
