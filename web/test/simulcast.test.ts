import { describe, expect, it } from 'vitest';

import { simulcastEncodings, svcEncodings } from '../src/lib/simulcast';

const three = (): RTCRtpEncodingParameters[] => [{}, {}, {}];

describe('simulcastEncodings', () => {
  it('encodes three layers at a quarter, half and full size with rising bitrates', () => {
    const e = simulcastEncodings(three(), 720);
    expect(e.map((x) => [x.scaleResolutionDownBy, x.maxBitrate, x.active])).toEqual([
      [4, 200_000, true],
      [2, 700_000, true],
      [1, 2_500_000, true],
    ]);
  });

  it('pauses the layers taller than receivers want, never the lowest while anything is wanted', () => {
    expect(simulcastEncodings(three(), 720, 360).map((x) => x.active)).toEqual([true, true, false]);
    expect(simulcastEncodings(three(), 720, 180).map((x) => x.active)).toEqual([true, false, false]);
    expect(simulcastEncodings(three(), 720, 90).map((x) => x.active)).toEqual([true, false, false]);
    expect(simulcastEncodings(three(), 720, 0).map((x) => x.active)).toEqual([false, false, false]);
  });

  it('scales a single encoding down instead', () => {
    const [e] = simulcastEncodings([{}], 720, 180);
    expect([e?.scaleResolutionDownBy, e?.active]).toEqual([4, true]);
  });
});

describe('svcEncodings', () => {
  type Svc = RTCRtpEncodingParameters & { scalabilityMode?: string };
  const pick = (e: Svc[]) => e.map((x) => [x.active, x.scalabilityMode, x.scaleResolutionDownBy]);

  it('sends every spatial layer in the first encoding and nothing in the others', () => {
    expect(pick(svcEncodings(three(), 720))).toEqual([
      [true, 'L3T3_KEY', 1],
      [false, undefined, undefined],
      [false, undefined, undefined],
    ]);
  });

  it('sends fewer, smaller layers when that is all receivers want', () => {
    expect(pick(svcEncodings([{}], 720, 360))).toEqual([[true, 'L2T3_KEY', 2]]);
    expect(pick(svcEncodings([{}], 720, 180))).toEqual([[true, 'L1T3', 4]]);
    expect(pick(svcEncodings([{}], 720, 0))[0]?.[0]).toBe(false);
  });
});
