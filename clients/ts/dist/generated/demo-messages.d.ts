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
/** The data of `JoinRoom` and `LeaveRoom`: `{"room": "<topic>"}`. */
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
export declare const Heartbeat: import("../index.js").MessageDefinition<HeartbeatData>;
/** `publish`: its data is a {@link PublishData}. */
export declare const Publish: import("../index.js").MessageDefinition<PublishData>;
/** `room.join`: its data is a {@link RoomData}. */
export declare const RoomJoin: import("../index.js").MessageDefinition<RoomData>;
/** `room.leave`: its data is a {@link RoomData}. */
export declare const RoomLeave: import("../index.js").MessageDefinition<RoomData>;
