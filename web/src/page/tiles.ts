// The video tiles: our preview and one per remote endpoint, each a
// <figure data-endpoint> holding one <video data-endpoint> that plays all of
// that endpoint's tracks.

export interface Tile {
  endpointId: string;
  root: HTMLElement;
  video: HTMLVideoElement;
  caption: HTMLElement;
  stream: MediaStream;
}

export class Tiles {
  private readonly tiles = new Map<string, Tile>();

  constructor(private readonly container: HTMLElement) {}

  get(endpointId: string): Tile | undefined {
    return this.tiles.get(endpointId);
  }

  /** The tile of an endpoint, created on first use. */
  ensure(endpointId: string, label: string, local = false): Tile {
    const have = this.tiles.get(endpointId);
    if (have) return have;
    const root = document.createElement('figure');
    root.className = 'tile';
    root.dataset.endpoint = endpointId;
    if (local) root.dataset.local = 'true';
    const video = document.createElement('video');
    video.dataset.endpoint = endpointId;
    video.autoplay = true;
    video.playsInline = true;
    // Our own preview must not echo; remote tiles play their audio.
    video.muted = local;
    const caption = document.createElement('figcaption');
    caption.textContent = label;
    root.append(video, caption);
    video.setAttribute('aria-label', local ? 'Your camera' : `Video of ${label}`);
    const stream = new MediaStream();
    video.srcObject = stream;
    const tile: Tile = { endpointId, root, video, caption, stream };
    this.tiles.set(endpointId, tile);
    if (local) this.container.prepend(root);
    else this.container.append(root);
    return tile;
  }

  setLabel(endpointId: string, label: string): void {
    const t = this.tiles.get(endpointId);
    if (!t) return;
    t.caption.textContent = label;
    t.video.setAttribute('aria-label', t.root.dataset.local === 'true' ? 'Your camera' : `Video of ${label}`);
  }

  addTrack(endpointId: string, label: string, track: MediaStreamTrack, local = false): void {
    const t = this.ensure(endpointId, label, local);
    // One track per kind in a tile: a new one replaces the old.
    for (const old of t.stream.getTracks()) if (old.kind === track.kind && old !== track) t.stream.removeTrack(old);
    if (!t.stream.getTracks().includes(track)) t.stream.addTrack(track);
    // Some browsers only notice tracks added to a playing stream after a reset.
    t.video.srcObject = t.stream;
    void t.video.play().catch(() => undefined);
  }

  removeTrack(endpointId: string, track: MediaStreamTrack): void {
    const t = this.tiles.get(endpointId);
    if (!t) return;
    t.stream.removeTrack(track);
    t.video.srcObject = t.stream;
  }

  remove(endpointId: string): void {
    const t = this.tiles.get(endpointId);
    if (!t) return;
    t.video.srcObject = null;
    t.root.remove();
    this.tiles.delete(endpointId);
  }

  setAttr(endpointId: string, key: string, value: string): void {
    const t = this.tiles.get(endpointId);
    if (t) t.root.dataset[key] = value;
  }

  /** Marks one tile as the dominant speaker. */
  setSpeaker(endpointId: string): void {
    for (const [id, t] of this.tiles) t.root.dataset.speaking = String(id === endpointId);
  }

  clear(): void {
    for (const id of [...this.tiles.keys()]) this.remove(id);
  }
}
