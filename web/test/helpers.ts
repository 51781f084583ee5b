import { xml, type Element } from '@xmpp/client';

const FIXTURES = import.meta.glob<string>('./fixtures/*', { query: '?raw', import: 'default', eager: true });

export function fixture(name: string): string {
  const text = FIXTURES[`./fixtures/${name}`];
  if (text === undefined) throw new Error(`no fixture ${name}`);
  return text;
}

/** Parses one XML document into an ltx element, as @xmpp/client would deliver it. */
export function parseXml(text: string): Element {
  const parser = new xml.Parser();
  let root: Element | undefined;
  let error: Error | undefined;
  parser.on('start', (el) => {
    root = el;
  });
  parser.on('element', (el) => {
    root?.append(el);
  });
  parser.on('error', (err) => {
    error = err;
  });
  parser.write(text.trim());
  parser.end();
  if (error) throw error;
  if (!root) throw new Error('no element');
  return root;
}

export function child(el: Element | undefined, name: string, ns?: string): Element {
  const c = el?.getChild(name, ns);
  if (!c) throw new Error(`no <${name}> in ${String(el)}`);
  return c;
}
