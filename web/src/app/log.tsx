// A chat log drawn only where the reader looks. A conversation's history
// grows without bound as it is scrolled back, and a meeting's chat keeps
// up to 2000 messages: drawing them all makes every new message re-lay out
// thousands of rows. TanStack Virtual measures each row as it is drawn
// (messages differ in height), keeps the message being read in place when
// older ones are put above it, and follows new ones only when the reader is
// already at the end, as Element's timeline does.
import { Fragment, type ComponentChildren, type RefObject } from 'preact';
import { useLayoutEffect, useMemo, useReducer, useRef, useState } from 'preact/hooks';
import {
  Virtualizer,
  defaultRangeExtractor,
  elementScroll,
  observeElementOffset,
  observeElementRect,
  type Range,
} from '@tanstack/virtual-core';

/** What a row spreads on its `<li>`: its place, for measuring and for screen readers. */
export interface RowProps {
  'data-index': number;
  'aria-posinset': number;
  'aria-setsize': number;
  style: string;
}

/** Lets the log's owner bring the reader to the newest message (after sending one). */
export interface LogControl {
  toEnd(): void;
}

interface Props<T> {
  items: readonly T[];
  keyOf: (item: T) => string;
  row: (item: T, props: RowProps) => ComponentChildren;
  /** The scrolling box's class; the list inside it is unstyled. */
  class: string;
  label?: string;
  /**
   * What sits above the oldest row (the start of the history, or a button
   * for more). Not a row itself: rows put above it are put under it, so
   * that the message being read, not this, is what stays in place.
   */
  head?: ComponentChildren;
  /** Called while the reader is within a screen of the oldest row. */
  onNearStart?: () => void;
  control?: RefObject<LogControl | null>;
}

/** Rows drawn beyond the visible ones, each side, so that a quick scroll shows no gap. */
const OVERSCAN = 6;
/** A row's height before it is drawn, in pixels: a one-line message. */
const ESTIMATE = 64;
/** Space above the first row and below the last, in pixels. */
const PAD = 8;
/** The head's height, in pixels: fixed, as the rows are placed under it. */
const HEAD = 52;

export function VirtualLog<T>({ items, keyOf, row, class: cls, label, head, onNearStart, control }: Props<T>) {
  const scroller = useRef<HTMLDivElement>(null);
  const list = useRef<HTMLOListElement>(null);
  const [, rerender] = useReducer((n: number) => n + 1, 0);
  // The row that holds the focus stays drawn, so that scrolling away
  // with the wheel does not drop the keyboard's place. By key: an older
  // page put above it moves its index.
  const focused = useRef<string | null>(null);
  const count = items.length;
  // Stable while the items are, so that a scroll does not re-lay out every row.
  const getItemKey = useMemo(
    () => (i: number) => {
      const item = items[i];
      return item === undefined ? i : keyOf(item);
    },
    [items],
  );
  const options = {
    count,
    getScrollElement: () => scroller.current,
    estimateSize: () => ESTIMATE,
    getItemKey,
    overscan: OVERSCAN,
    paddingStart: head === undefined ? PAD : PAD + HEAD,
    paddingEnd: PAD,
    anchorTo: 'end' as const,
    followOnAppend: true,
    scrollEndThreshold: 40,
    rangeExtractor: (range: Range) => {
      const drawn = defaultRangeExtractor(range);
      const key = focused.current;
      if (key === null || drawn.some((i) => getItemKey(i) === key)) return drawn;
      const f = items.findIndex((item) => keyOf(item) === key);
      return f < 0 ? drawn : [...drawn, f].sort((a, b) => a - b);
    },
    observeElementRect,
    observeElementOffset,
    scrollToFn: elementScroll,
    onChange: () => rerender(0),
  };
  const [v] = useState(() => new Virtualizer<HTMLDivElement, HTMLLIElement>(options));
  v.setOptions(options);
  if (control !== undefined) control.current = { toEnd: () => v.scrollToEnd() };

  useLayoutEffect(() => {
    v._willUpdate();
    for (const el of list.current?.querySelectorAll(':scope > [data-index]') ?? []) v.measureElement(el as HTMLLIElement);
  });
  useLayoutEffect(() => {
    // A log opens at its newest message.
    v.scrollToEnd();
    return v._didMount();
  }, []);

  const near = () => {
    const el = scroller.current;
    if (el !== null && onNearStart !== undefined && el.scrollTop < el.clientHeight) onNearStart();
  };
  // A log too short to scroll asks for more at once: no scroll will.
  useLayoutEffect(() => {
    const el = scroller.current;
    if (el !== null && el.scrollHeight <= el.clientHeight) onNearStart?.();
  }, [count]);

  const rows = v.getVirtualItems();
  return (
    <div ref={scroller} class={cls} tabIndex={0} onScroll={near} role="region" aria-label={label}>
      <ol
        ref={list}
        aria-label={label}
        class="log"
        // New messages are read out while the reader is at the end; rows
        // that scrolling back draws are old ones, and are not.
        aria-live={v.isAtEnd() ? 'polite' : 'off'}
        aria-relevant="additions"
        style={`height:${String(v.getTotalSize())}px`}
        onFocusIn={(e) => {
          const li = (e.target as Element).closest('[data-index]');
          const item = li === null ? undefined : items[Number(li.getAttribute('data-index'))];
          focused.current = item === undefined ? null : keyOf(item);
        }}
        onFocusOut={(e) => {
          if (!list.current?.contains(e.relatedTarget as Node | null)) focused.current = null;
        }}
      >
        {head !== undefined && (
          <li class="log-head" style={`height:${String(HEAD)}px;transform:translateY(${String(PAD)}px)`}>
            {head}
          </li>
        )}
        {rows.map((r) => {
          const item = items[r.index];
          if (item === undefined) return null;
          return (
            <Fragment key={r.key}>
              {row(item, {
                'data-index': r.index,
                'aria-posinset': r.index + 1,
                'aria-setsize': count,
                style: `transform:translateY(${String(r.start)}px)`,
              })}
            </Fragment>
          );
        })}
      </ol>
    </div>
  );
}
