/// An error describing why a cron expression, interval or time zone was rejected.
///
/// `message` is a complete human-readable sentence suitable for returning to an API caller.
/// `field` names the part of the input at fault when there is one: `second`, `minute`, `hour`,
/// `day-of-month`, `month`, `day-of-week`, `interval` or `timezone`.
public struct CronError: Error, CustomStringConvertible, Sendable, Equatable {
    /// A human-readable explanation, naming the field and the offending text where possible.
    public let message: String
    /// The field the error concerns, or nil when it concerns the expression as a whole.
    public let field: String?

    /// Creates an error with a message and the field it concerns.
    public init(_ message: String, field: String? = nil) {
        self.message = message
        self.field = field
    }

    public var description: String { message }
}
