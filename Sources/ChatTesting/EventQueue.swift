import ChatCore
import HeapModule

/// The virtual clock and its queue of future events: what a discrete-event run is made of.
///
/// Events come out in (time, scheduling order) order, so ties break the same way in every run and
/// nothing outside the run (a hash seed, an address) can reorder them. Popping an event moves the
/// clock to its time; the clock never goes back.
public struct EventQueue<Event> {
    @usableFromInline
    struct Entry: Comparable {
        @usableFromInline let time: Instant
        @usableFromInline let sequence: UInt64
        @usableFromInline let event: Event

        @inlinable
        init(time: Instant, sequence: UInt64, event: Event) {
            self.time = time
            self.sequence = sequence
            self.event = event
        }

        @inlinable
        static func < (lhs: Entry, rhs: Entry) -> Bool {
            lhs.time != rhs.time ? lhs.time < rhs.time : lhs.sequence < rhs.sequence
        }

        @inlinable
        static func == (lhs: Entry, rhs: Entry) -> Bool {
            lhs.time == rhs.time && lhs.sequence == rhs.sequence
        }
    }

    @usableFromInline var heap = Heap<Entry>()
    @usableFromInline var nextSequence: UInt64 = 0
    @usableFromInline var clock: Instant

    /// The virtual time of the event last popped (the origin before the first).
    @inlinable
    public var now: Instant { clock }

    public init(start: Instant = .zero) {
        clock = start
    }

    /// Events waiting.
    @inlinable
    public var count: Int { heap.count }

    @inlinable
    public var isEmpty: Bool { heap.isEmpty }

    /// When the next event is due, if any.
    @inlinable
    public var nextTime: Instant? { heap.min?.time }

    /// Queue `event` at `time` (not before now: the past cannot be scheduled).
    @inlinable
    public mutating func schedule(at time: Instant, _ event: Event) {
        heap.insert(Entry(time: Swift.max(time, now), sequence: nextSequence, event: event))
        nextSequence &+= 1
    }

    /// Queue `event` `delay` after now.
    @inlinable
    public mutating func schedule(after delay: Duration, _ event: Event) {
        schedule(at: now.advanced(by: delay), event)
    }

    /// Move the clock to `time` without an event (nothing may be due before it).
    @inlinable
    public mutating func advance(to time: Instant) {
        precondition(heap.min.map { $0.time >= time } ?? true, "an event is due before \(time)")
        clock = Swift.max(clock, time)
    }

    /// Take the next event and move the clock to its time.
    @inlinable
    public mutating func pop() -> Event? {
        guard let entry = heap.popMin() else { return nil }
        clock = entry.time
        return entry.event
    }
}
