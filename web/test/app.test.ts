import { describe, expect, it } from 'vitest';
import { gridCapacity, gridShape, tracks } from '../src/app/meeting/layout';
import { newMeetingName, roomFromInput, routeOf } from '../src/app/route';
import en from '../src/app/locales/en.json';
import { t } from '../src/app/i18n';
import { COMPONENTS, GROUPS, matches } from '../src/app/emoji';
import emojiData from 'emojibase-data/en/compact.json';

describe('routes and meeting names', () => {
  it('tells the home page, a meeting and an unusable name apart', () => {
    expect(routeOf('/')).toEqual({ kind: 'home' });
    expect(routeOf('/Team-Sync')).toEqual({ kind: 'meeting', room: 'team-sync' });
    expect(routeOf('/a%20b')).toEqual({ kind: 'bad-room', raw: 'a b' });
    expect(routeOf('/x@y')).toEqual({ kind: 'bad-room', raw: 'x@y' });
    expect(routeOf('/%E0%A4%A')).toEqual({ kind: 'bad-room', raw: '%E0%A4%A' });
  });

  it('generates names of 80 random bits that are rooms', () => {
    const names = new Set(Array.from({ length: 200 }, () => newMeetingName()));
    expect(names.size).toBe(200);
    for (const n of names) {
      expect(n).toMatch(/^[0-9a-hjkmnp-tv-z]{4}(-[0-9a-hjkmnp-tv-z]{4}){3}$/);
      expect(routeOf(`/${n}`)).toEqual({ kind: 'meeting', room: n });
    }
  });

  it('takes what a person types or pastes', () => {
    expect(roomFromInput('  Weekly Sync ')).toBe('weekly-sync');
    expect(roomFromInput('https://meet.example.org/BoardMeeting?x=1')).toBe('boardmeeting');
    expect(roomFromInput('')).toBeNull();
    expect(roomFromInput('a@b')).toBeNull();
    expect(roomFromInput('https://meet.example.org/')).toBeNull();
  });
});

describe('the tile grid', () => {
  it('keeps tiles readable: 25 at most, fewer on a phone', () => {
    expect(gridCapacity(1920, 1000)).toBe(25);
    expect(gridCapacity(360, 560)).toBe(12);
    expect(gridCapacity(0, 0)).toBe(4);
  });

  it('sizes every tile 16:9, however wide the space beside a panel', () => {
    // Two tiles in a wide, short view: as tall as it allows, not stretched.
    expect(tracks({ cols: 2, rows: 1 }, { w: 2000, h: 396 })).toEqual({ gridTemplateColumns: 'repeat(2, 704.0px)', gridTemplateRows: 'repeat(1, 396.0px)' });
    expect(tracks({ cols: 2, rows: 1 }, { w: 808, h: 900 })).toEqual({ gridTemplateColumns: 'repeat(2, 400.0px)', gridTemplateRows: 'repeat(1, 225.0px)' });
  });

  it('picks the shape giving the largest 16:9 tiles', () => {
    expect(gridShape(1, 1280, 720)).toEqual({ cols: 1, rows: 1 });
    expect(gridShape(2, 1280, 720)).toEqual({ cols: 2, rows: 1 });
    expect(gridShape(2, 360, 600)).toEqual({ cols: 1, rows: 2 });
    expect(gridShape(9, 1280, 720)).toEqual({ cols: 3, rows: 3 });
  });
});

describe('the string catalogue', () => {
  it('has every string, with plurals', () => {
    expect(t('meeting.count', { count: 1 })).toBe('1 participant');
    expect(t('meeting.count', { count: 3 })).toBe('3 participants');
    expect(t('prejoin.problem.denied', { device: t('prejoin.deviceWord.camera') })).toContain('your camera is blocked');
    expect(Object.keys(en).length).toBeGreaterThan(10);
  });
});

describe('the emoji picker', () => {
  it('finds emoji by the start of their names and keywords, every word', () => {
    const thumbs = { label: 'thumbs up', tags: ['+1', 'good', 'like', 'yes'] };
    expect(matches(thumbs, 'thumb')).toBe(true);
    expect(matches(thumbs, 'LIKE')).toBe(true);
    expect(matches(thumbs, 'thumbs up')).toBe(true);
    expect(matches(thumbs, 'thumbs down')).toBe(false);
    expect(matches(thumbs, 'humb')).toBe(false);
    expect(matches({ label: 'flag: France' }, 'france')).toBe(true);
  });
});

describe('the emoji picker groups', () => {
  it('name every group of the data but the components, each from the catalogue', () => {
    const inData = [...new Set(emojiData.flatMap((e) => (e.group === undefined || e.group === COMPONENTS ? [] : [e.group])))].sort((a, b) => a - b);
    expect(GROUPS.map(([n]) => n)).toEqual(inData);
    for (const [, key] of GROUPS) {
      expect(t(`emoji.group.${key}`)).not.toBe(`emoji.group.${key}`);
    }
  });
});
