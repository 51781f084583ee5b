// What each simulcast layer is encoded as. SDP munging (a SIM group in the
// local answer) makes the browser encode three streams, but at the
// camera's full size each unless told otherwise: sizes and bitrates are
// set on the sender's encodings, as lib-jitsi-meet does. With VP9 the
// layers go in one stream instead (SVC), as lib-jitsi-meet sends VP9.

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

/** VP9 SVC by the most receivers want: three, two or one spatial layers. */
export function svcEncodings(
  encodings: RTCRtpEncodingParameters[],
  trackHeight: number,
  maxHeight?: number,
): RTCRtpEncodingParameters[] {
  const want = maxHeight ?? trackHeight;
  const spatial = want >= trackHeight ? 3 : want >= trackHeight / 2 ? 2 : 1;
  return encodings.map((e, i) => {
    const out: RTCRtpEncodingParameters & { scalabilityMode?: string } = { ...e };
    out.active = i === 0 && want > 0;
    if (i === 0) {
      out.scalabilityMode = spatial === 1 ? 'L1T3' : `L${String(spatial)}T3_KEY`;
      out.scaleResolutionDownBy = 2 ** (3 - spatial);
      out.maxBitrate = MAX_BITRATE.slice(0, spatial).reduce((a, b) => a + b, 0);
    }
    return out;
  });
}
