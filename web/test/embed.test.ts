import { describe, expect, it } from 'vitest';
import { asToFrame, asToParent, buildHash, normalOrigin, parseHash, TAG } from '../src/embed/protocol';

describe('the embedding API: the iframe URL hash', () => {
  it('reads back what the external API writes', () => {
    const p = {
      apiId: '3',
      parentOrigin: 'https://shop.example:8080',
      displayName: 'Zoë & Ann #1',
      startWithAudioMuted: true,
      startWithVideoMuted: false,
      prejoinPageEnabled: false,
      lang: 'pt-BR',
    };
    const hash = buildHash(p);
    expect(hash.startsWith('#conclave_api_id=')).toBe(true);
    expect(parseHash(hash)).toEqual(p);
    // Nothing optional given: nothing optional read.
    expect(parseHash(buildHash({ apiId: '0', parentOrigin: 'http://127.0.0.1:3000' }))).toEqual({
      apiId: '0',
      parentOrigin: 'http://127.0.0.1:3000',
    });
  });

  it("takes Jitsi's hand-written form: bare words, numbers, booleans", () => {
    expect(
      parseHash('#conclave_api_id=7&parentOrigin=https://a.example&userInfo.displayName=Bob&config.prejoinPageEnabled=false'),
    ).toEqual({ apiId: '7', parentOrigin: 'https://a.example', displayName: 'Bob', prejoinPageEnabled: false });
  });

  it('is not embedded without an id or a usable parent origin', () => {
    expect(parseHash('')).toBeNull();
    expect(parseHash('#userInfo.displayName="x"')).toBeNull();
    expect(parseHash('#conclave_api_id=1')).toBeNull();
    for (const bad of ['*', 'null', 'https://a.example/', 'https://a.example/path', 'javascript:alert(1)', 'https://u@a.example', 'ftp://a.example', '%E0%A4%A']) {
      expect(parseHash(`#conclave_api_id=1&parentOrigin=${encodeURIComponent(bad)}`), bad).toBeNull();
    }
  });

  it('drops values of the wrong type and bounds the name', () => {
    const p = parseHash(
      `#conclave_api_id=1&parentOrigin="https://a.example"&config.startWithAudioMuted="yes"&userInfo.displayName=${'x'.repeat(100)}&lang="<b>"`,
    );
    expect(p).toEqual({ apiId: '1', parentOrigin: 'https://a.example', displayName: 'x'.repeat(64) });
  });

  it('knows an origin from anything else', () => {
    expect(normalOrigin('https://meet.example')).toBe('https://meet.example');
    expect(normalOrigin('http://127.0.0.1:8080')).toBe('http://127.0.0.1:8080');
    expect(normalOrigin('https://meet.example:443')).toBeNull();
    expect(normalOrigin('HTTPS://Meet.Example')).toBeNull();
  });
});

describe('the embedding API: messages', () => {
  it('takes only envelopes for its own instance', () => {
    const cmd = { tag: TAG, apiId: '1', kind: 'command', name: 'toggleAudio', args: [] };
    expect(asToFrame(cmd, '1')).toEqual(cmd);
    expect(asToFrame(cmd, '2')).toBeNull();
    expect(asToFrame({ ...cmd, tag: 'other' }, '1')).toBeNull();
    expect(asToFrame('toggleAudio', '1')).toBeNull();
    expect(asToFrame(null, '1')).toBeNull();
    expect(asToFrame({ ...cmd, args: 'x' }, '1')).toEqual(cmd);
    expect(asToFrame({ ...cmd, kind: 'request' }, '1')).toBeNull();
    expect(asToFrame({ ...cmd, kind: 'request', reqId: 4 }, '1')).toEqual({ ...cmd, kind: 'request', reqId: 4 });
    expect(asToFrame({ ...cmd, kind: 'event' }, '1')).toBeNull();
  });

  it('reads events, responses and the ready signal', () => {
    const ev = { tag: TAG, apiId: '0', kind: 'event', name: 'participantJoined', data: { id: 'ab12', displayName: 'Ann' } };
    expect(asToParent(ev, '0')).toEqual(ev);
    expect(asToParent({ ...ev, data: [] }, '0')).toBeNull();
    expect(asToParent({ tag: TAG, apiId: '0', kind: 'ready' }, '0')).toEqual({ tag: TAG, apiId: '0', kind: 'ready' });
    expect(asToParent({ tag: TAG, apiId: '0', kind: 'response', reqId: 1, ok: true, result: false }, '0')).toEqual({
      tag: TAG,
      apiId: '0',
      kind: 'response',
      reqId: 1,
      ok: true,
      result: false,
    });
    expect(asToParent({ tag: TAG, apiId: '0', kind: 'response', reqId: 1 }, '0')).toBeNull();
  });
});
