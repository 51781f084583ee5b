// Conclave's browser meeting library.
export { Conference, JoinError } from './conference';
export type { Knocker, MediaKind, ConferenceEvents, JoinOptions, Participant, RemoteTrack, ChatMessage, SourceInfo } from './conference';
export { loadMeetConfig, parseMeetConfig, roomFromPath } from './config';
export type { MeetConfig } from './config';
export type { ReceiverVideoConstraints } from './bridge-channel';
export { Emitter } from './emitter';
export type { VideoCodec } from './jingle-session';
export { ChatClient, SignInError, localpartOf } from './chat/client';
export type { ChatClientEvents, Credentials, HistoryPage, Show } from './chat/client';
export { bare as bareJid } from './chat/stanzas';
export type { Bookmark, ChatEvent, ChatItem, FileRef, RosterItem } from './chat/stanzas';
export { UploadError, uploadFile } from './upload';
