// What each simulcast layer is encoded as. SDP munging (a SIM group in the
// local answer) makes the browser encode three streams, but at the
// camera's full size each unless told otherwise: sizes and bitrates are
// set on the sender's encodings, as lib-jitsi-meet does.

import { SIMULCAST_LAYERS } from './jingle-sdp';

/** Lowest first: quarter, half and full size of the camera. */
const SCALE = [4, 2, 1];
/** Lowest first, bits/s: lib-jitsi-meet's defaults for VP8. */
const MAX_BITRATE = [200_000, 700_000, 2_500_000];

/**
 * The encodings to set for a camera `trackHeight` pixels high when
 * receivers want at most `maxHeight` (undefined: no limit; 0: nothing).
 * A layer taller than wanted is paused, but never the lowest while anything
 * is wanted, so that a small request still gets a picture.
 */
export function simulcastEncodings(
  encodings: RTCRtpEncodingParameters[],
  trackHeight: number,
  maxHeight?: number,
): RTCRtpEncodingParameters[] {
  const layered = encodings.length === SIMULCAST_LAYERS;
  return encodings.map((e, i) => {
    const scale = layered ? (SCALE[i] ?? 1) : (e.scaleResolutionDownBy ?? 1);
    const height = trackHeight / scale;
    const wanted = maxHeight === undefined || (maxHeight > 0 && (i === 0 || height <= maxHeight));
    const out: RTCRtpEncodingParameters = { ...e, active: wanted };
    if (layered) {
      out.scaleResolutionDownBy = scale;
      out.maxBitrate = MAX_BITRATE[i] ?? MAX_BITRATE[MAX_BITRATE.length - 1];
    } else if (maxHeight !== undefined && maxHeight > 0) {
      // One layer: scale it down instead.
      out.scaleResolutionDownBy = Math.max(1, trackHeight / maxHeight);
    }
    return out;
  });
}
