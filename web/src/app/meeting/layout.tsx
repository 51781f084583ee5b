// Tile view and stage view. Both draw only as many tiles as stay readable
// in the space they have, and tell the bridge exactly which videos they
// draw and how tall, so hidden and small tiles cost no bandwidth.
import { useEffect, useRef, useState } from 'preact/hooks';
import { t } from '../i18n';
import { Tile } from './tile';
import type { MeetingStore, PeerView } from './store';

/** Tiles narrower than this are unreadable. */
const MIN_TILE_WIDTH = 160;
const MAX_GRID_TILES = 25;
const STRIP_TILE_WIDTH = 176;

function useSize(): [preact.RefObject<HTMLDivElement>, { w: number; h: number }] {
  const ref = useRef<HTMLDivElement>(null);
  const [size, setSize] = useState({ w: 0, h: 0 });
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    const ro = new ResizeObserver(() => setSize({ w: el.clientWidth, h: el.clientHeight }));
    ro.observe(el);
    setSize({ w: el.clientWidth, h: el.clientHeight });
    return () => ro.disconnect();
  }, []);
  return [ref, size];
}

/** The layer to ask for, for a tile drawn `px` tall (on this screen's pixels). */
export function heightFor(px: number): number {
  const real = px * (window.devicePixelRatio || 1);
  return real > 400 ? 720 : real > 200 ? 360 : 180;
}

/** Columns and rows for `n` 16:9 tiles in `w`×`h`, largest tiles first. */
export function gridShape(n: number, w: number, h: number): { cols: number; rows: number } {
  let best = { cols: 1, rows: Math.max(1, n), area: 0 };
  for (let cols = 1; cols <= Math.max(1, n); cols++) {
    const rows = Math.ceil(n / cols);
    const tw = Math.min(w / cols, ((h / rows) * 16) / 9);
    // On a tie, more columns: screens are wider than tall.
    if (tw >= best.area) best = { cols, rows, area: tw };
  }
  return { cols: best.cols, rows: best.rows };
}

const GRID_GAP = 8;

/**
 * Tracks of exactly one 16:9 tile each, centred: fractions of the width
 * would stretch two tiles beside an open panel wider than their video.
 */
export function tracks(shape: { cols: number; rows: number }, size: { w: number; h: number }): Record<string, string> {
  if (size.w <= 0 || size.h <= 0) {
    return { gridTemplateColumns: `repeat(${shape.cols}, minmax(0, 1fr))`, gridTemplateRows: `repeat(${shape.rows}, minmax(0, 1fr))` };
  }
  const w = Math.max(0, Math.min((size.w - GRID_GAP * (shape.cols - 1)) / shape.cols, (((size.h - GRID_GAP * (shape.rows - 1)) / shape.rows) * 16) / 9));
  const h = (w * 9) / 16;
  return { gridTemplateColumns: `repeat(${shape.cols}, ${w.toFixed(1)}px)`, gridTemplateRows: `repeat(${shape.rows}, ${h.toFixed(1)}px)` };
}

/** How many tiles fit readable: at most 25, fewer on a small screen. */
export function gridCapacity(w: number, h: number): number {
  if (w <= 0 || h <= 0) return 4;
  const cols = Math.max(1, Math.floor(w / MIN_TILE_WIDTH));
  const rows = Math.max(1, Math.floor(h / ((MIN_TILE_WIDTH * 9) / 16)));
  return Math.min(MAX_GRID_TILES, Math.max(2, cols * rows));
}

export function Grid({ store, local }: { store: MeetingStore; local: PeerView }) {
  const [ref, size] = useSize();
  const peers = store.peers.value;
  const order = store.order.value;
  const dominant = store.dominant.value;
  const cap = gridCapacity(size.w, size.h);
  // Our own tile is always shown; the rest fill the other places.
  const remoteCap = cap - 1;
  const overflow = order.length > remoteCap ? order.length - (remoteCap - 1) : 0;
  const shown = overflow > 0 ? order.slice(0, remoteCap - 1) : order;
  const count = 1 + shown.length + (overflow > 0 ? 1 : 0);
  const shape = gridShape(count, size.w, size.h);
  const tileH = size.h / shape.rows;

  useEffect(() => {
    if (dominant !== null && overflow > 0) store.bringIntoView(dominant, remoteCap - 1);
  }, [dominant, overflow, remoteCap, store]);
  useEffect(() => {
    const h = heightFor(tileH);
    store.setVisible(new Map(shown.map((id) => [id, h])), null);
  });

  return (
    <div
      ref={ref}
      class="grid"
      style={tracks(shape, size)}
    >
      <Tile peer={local} speaking={false} pinned={false} />
      {shown.map((id) => {
        const p = peers.get(id);
        return p ? (
          <Tile key={id} peer={p} speaking={dominant === id} pinned={false} onPin={() => store.togglePin(id)} />
        ) : null;
      })}
      {overflow > 0 && (
        <button type="button" class="tile more" onClick={() => store.openPanel('participants')}>
          {t('layout.more', { count: overflow })}
        </button>
      )}
    </div>
  );
}

export function Stage({ store, local }: { store: MeetingStore; local: PeerView }) {
  const [ref, size] = useSize();
  const peers = store.peers.value;
  const stageId = store.stageId.value;
  const dominant = store.dominant.value;
  const pinned = store.pinned.value;
  const onStage = stageId !== null ? peers.get(stageId) : undefined;
  const stripCap = Math.max(1, Math.floor(size.w / STRIP_TILE_WIDTH));
  const rest = store.order.value.filter((id) => id !== stageId);
  const strip = rest.slice(0, Math.max(0, stripCap - 1));
  const hidden = rest.length - strip.length;

  useEffect(() => {
    const visible = new Map<string, number>(strip.map((id) => [id, 180]));
    if (stageId !== null) {
      // A shared screen is read, not glanced at: ask for its best layer.
      visible.set(stageId, onStage?.videoType === 'desktop' ? 1080 : heightFor(size.h * 0.75));
    }
    store.setVisible(visible, stageId);
  });

  return (
    <div ref={ref} class="stage-view">
      <div class="stage">
        {onStage ? (
          <Tile
            peer={onStage}
            speaking={dominant === onStage.id}
            pinned={pinned === onStage.id}
            onPin={() => store.togglePin(onStage.id)}
            stage
          />
        ) : (
          <Tile peer={local} speaking={false} pinned={false} stage />
        )}
      </div>
      <div class="strip" role="list" aria-label={t('layout.strip')}>
        {onStage && (
          <div role="listitem">
            <Tile peer={local} speaking={false} pinned={false} />
          </div>
        )}
        {strip.map((id) => {
          const p = peers.get(id);
          return p ? (
            <div role="listitem" key={id}>
              <Tile peer={p} speaking={dominant === id} pinned={pinned === id} onPin={() => store.togglePin(id)} />
            </div>
          ) : null;
        })}
        {hidden > 0 && (
          <div role="listitem">
            <button type="button" class="tile more" onClick={() => store.openPanel('participants')}>
              {t('layout.more', { count: hidden })}
            </button>
          </div>
        )}
      </div>
    </div>
  );
}
