// Every string the app shows comes from one catalogue per language
// (locales/*.json), through i18next: plurals and interpolation follow the
// language's rules, and a translation is a new JSON file, not a code change.
import i18next from 'i18next';
import en from './locales/en.json';

void i18next.init({
  lng: 'en',
  fallbackLng: 'en',
  resources: { en: { translation: en } },
  // Preact escapes text it renders; escaping here too would show &amp;.
  interpolation: { escapeValue: false },
  initAsync: false,
});

export const t = i18next.t.bind(i18next);
