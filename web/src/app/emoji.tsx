// The full emoji picker (as Element has, for reactions and for the message
// box), on emojibase's data: Unicode's emoji in their order with CLDR's
// names and keywords. The data (~90 KB compressed) is its own chunk,
// fetched from this server the first time a picker opens.
import type { CompactEmoji } from 'emojibase';
import { useEffect, useRef, useState } from 'preact/hooks';
import { t } from './i18n';

interface Catalogue {
  groups: { key: number; name: string }[];
  emoji: CompactEmoji[];
}

/** Group 2 holds the bare skin-tone and hair components: not for picking. */
export const COMPONENTS = 2;
/**
 * emojibase's groups by number, in its order (all but the components),
 * each with its name's key in our catalogue, so that translators find
 * them with every other string.
 */
export const GROUPS: readonly (readonly [number, string])[] = [
  [0, 'smileysEmotion'],
  [1, 'peopleBody'],
  [3, 'animalsNature'],
  [4, 'foodDrink'],
  [5, 'travelPlaces'],
  [6, 'activities'],
  [7, 'objects'],
  [8, 'symbols'],
  [9, 'flags'],
];
const MAX_RESULTS = 120;

let catalogue: Promise<Catalogue> | null = null;

function load(): Promise<Catalogue> {
  catalogue ??= import('emojibase-data/en/compact.json').then((data) => ({
    groups: GROUPS.map(([key, name]) => ({ key, name: t(`emoji.group.${name}`) })),
    emoji: data.default.filter((e) => e.group !== undefined && e.group !== COMPONENTS).sort((a, b) => (a.order ?? 0) - (b.order ?? 0)),
  }));
  catalogue.catch(() => (catalogue = null));
  return catalogue;
}

/** Whether an emoji answers a search: its name or one of its keywords starts with each word. */
export function matches(e: Pick<CompactEmoji, 'label' | 'tags'>, query: string): boolean {
  const words = query.toLowerCase().split(/\s+/).filter((w) => w !== '');
  const names = [...e.label.toLowerCase().split(/[\s:,-]+/), ...(e.tags ?? [])];
  return words.every((w) => names.some((n) => n.startsWith(w)));
}

export function EmojiPicker({
  label,
  onPick,
  onClose,
  floating = false,
}: {
  label: string;
  onPick: (emoji: string) => void;
  onClose: () => void;
  /** Over what is above it (the message box's), not pushing it aside. */
  floating?: boolean;
}) {
  const [data, setData] = useState<Catalogue | null>(null);
  const [failed, setFailed] = useState(false);
  const [query, setQuery] = useState('');
  const [group, setGroup] = useState(0);
  const search = useRef<HTMLInputElement>(null);
  useEffect(() => {
    let live = true;
    load().then(
      (c) => live && setData(c),
      () => live && setFailed(true),
    );
    search.current?.focus();
    return () => {
      live = false;
    };
  }, []);
  const q = query.trim();
  const shown = data === null ? [] : q !== '' ? data.emoji.filter((e) => matches(e, q)).slice(0, MAX_RESULTS) : data.emoji.filter((e) => e.group === group);
  return (
    <div
      class={floating ? 'emoji-picker floating' : 'emoji-picker'}
      role="dialog"
      aria-label={label}
      onKeyDown={(e) => {
        if (e.key === 'Escape') {
          e.stopPropagation();
          onClose();
        }
      }}
    >
      <input
        ref={search}
        type="search"
        aria-label={t('emoji.search')}
        placeholder={t('emoji.search')}
        value={query}
        onInput={(e) => setQuery(e.currentTarget.value)}
      />
      {q === '' && data !== null && (
        <div class="emoji-groups" role="group" aria-label={t('emoji.groups')}>
          {data.groups.map((g) => (
            <button key={g.key} type="button" class="small" aria-pressed={g.key === group} onClick={() => setGroup(g.key)}>
              {g.name}
            </button>
          ))}
        </div>
      )}
      {failed ? (
        <p class="error" role="alert">
          {t('emoji.failed')}
        </p>
      ) : data === null ? (
        <p class="detail">{t('chatApp.loading')}</p>
      ) : shown.length === 0 ? (
        <p class="detail">{t('emoji.none', { query: q })}</p>
      ) : (
        <ul class="emoji-grid" aria-label={q !== '' ? t('emoji.results') : (data.groups.find((g) => g.key === group)?.name ?? '')}>
          {shown.map((e) => (
            <li key={e.hexcode}>
              <button type="button" class="icon" aria-label={e.label} title={e.label} onClick={() => onPick(e.unicode)}>
                {e.unicode}
              </button>
            </li>
          ))}
        </ul>
      )}
      <button type="button" class="small" onClick={onClose}>
        {t('emoji.close')}
      </button>
    </div>
  );
}
