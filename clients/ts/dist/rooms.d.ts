import type { RecoveredData, RoomJoinedData, RoomMessageData } from './definitions.js';
export declare class Rooms {
    /** Rooms joined, and for those with positions the latest position seen. */
    private readonly set;
    /** Rooms with positions whose reply this connection awaits: true for a resume, false for a first join. */
    private awaiting;
    private recoveredNow;
    private reconnectedNow;
    private settleRecovered;
    get names(): string[];
    has(room: string): boolean;
    add(room: string, positions: boolean): void;
    delete(room: string): boolean;
    clear(): void;
    position(room: string): {
        epoch: string;
        offset: number;
    } | undefined;
    /**
     * The `room.join` for `room`: with positions a resume (`since`) when one
     * is known. `live`: it goes out on an open connection now, so its
     * `room.joined` counts towards that connection's recovery report.
     */
    joinMessage(room: string, live: boolean): string;
    /**
     * A connection is ready: the joins to send, in order, and the promise of
     * its recovery report (already settled when no room has positions).
     */
    connectionReady(reconnected: boolean): {
        joins: string[];
        recovered: Promise<Record<string, boolean>>;
    };
    /** A `room.joined` reply: takes its position; returns the `RoomJoined` event data. */
    joined(m: Record<string, unknown>): RoomJoinedData;
    /**
     * Counts a room's answer towards the connection's report (after its
     * `RoomJoined` went out, whose handlers may have closed the connection);
     * returns the `Recovered` event data once every awaited room answered.
     */
    answered(data: RoomJoinedData): RecoveredData | null;
    /** A `room.message`: advances the room's offset; null for a publication already seen. */
    message(m: Record<string, unknown>): RoomMessageData | null;
    /** The connection closed: rooms that had not answered count as not recovered. */
    connectionClosed(): void;
    /** Every awaited room answered: settles the report; the `Recovered` data unless no room has positions. */
    private finish;
}
