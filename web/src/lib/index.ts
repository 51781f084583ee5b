// Conclave's browser meeting library.
export { Conference, JoinError } from './conference';
export type { Knocker, MediaKind, ConferenceEvents, JoinOptions, Participant, RemoteTrack, ChatMessage, SourceInfo } from './conference';
export { loadMeetConfig, parseMeetConfig, roomFromPath } from './config';
export type { MeetConfig } from './config';
export type { ReceiverVideoConstraints } from './bridge-channel';
export { Emitter } from './emitter';
export type { VideoCodec } from './jingle-session';
