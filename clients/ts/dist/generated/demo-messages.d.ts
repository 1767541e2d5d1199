/** The (empty) data of `Heartbeat`. */
export interface HeartbeatData {
}
/** The data of the `publish` route. */
export interface PublishData {
    /** The notification text. */
    message: string;
    /**
     * The room to publish to.
     *
     * @format ori-client-topic
     * @minLength 1
     * @maxLength 256
     */
    topic: string;
}
/**
 * The data of `JoinRoom`: `{"room": "<topic>"}`, optionally with
 * positions (`"recover": true`) or a resume (`"since": {"epoch", "offset"}`)
 * (PROTOCOL.md section 8).
 */
export interface JoinData {
    /**
     * Join with positions: publications arrive as `room.message`
     * envelopes with their offsets, after a `room.joined` reply.
     */
    recover?: boolean | null;
    /**
     * The room (topic) to join.
     *
     * @format ori-client-topic
     * @minLength 1
     * @maxLength 256
     */
    room: string;
    /**
     * Resume after this position: the missed publications are replayed
     * first when they are all still there.
     */
    since?: Since | null;
}
/**
 * A position a client saw: the history's epoch and the last offset
 * received.
 */
export interface Since {
    /**
     * The epoch of the history (1 to 64 characters).
     *
     * @minLength 1
     * @maxLength 64
     */
    epoch: string;
    /**
     * The last offset received (0: none yet).
     *
     * @format uint64
     * @minimum 0
     */
    offset: number;
}
/**
 * The data of `LeaveRoom` (and of any message naming one room):
 * `{"room": "<topic>"}`.
 */
export interface RoomData {
    /**
     * The room (topic) to join or leave.
     *
     * @format ori-client-topic
     * @minLength 1
     * @maxLength 256
     */
    room: string;
}
/** `heartbeat`: its data is a {@link HeartbeatData}. */
export declare const Heartbeat: import("../definitions.js").MessageDefinition<HeartbeatData>;
/** `publish`: its data is a {@link PublishData}. */
export declare const Publish: import("../definitions.js").MessageDefinition<PublishData>;
/** `room.join`: its data is a {@link JoinData}. */
export declare const RoomJoin: import("../definitions.js").MessageDefinition<JoinData>;
/** `room.leave`: its data is a {@link RoomData}. */
export declare const RoomLeave: import("../definitions.js").MessageDefinition<RoomData>;
