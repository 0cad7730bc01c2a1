/// How a schedule treats local times that a spring-forward transition skips.
///
/// The default depends on the expression: schedules at fixed times of day (see
/// ``CronExpression/isFixedTime``) use ``runAtTransition``; the others (a minute or hour field
/// starting with `*`, or a seconds field) use ``skip``, following the wall clock.
public enum DSTGapPolicy: String, Sendable, Hashable, CaseIterable {
    /// Fire once, at the first instant after the gap, for matching local times inside it.
    case runAtTransition
    /// Do not fire for local times that do not exist.
    case skip
}

/// How a schedule treats local times that a fall-back transition repeats.
///
/// The default depends on the expression: schedules at fixed times of day use ``once``; the others
/// use ``twice``, following the wall clock.
public enum DSTFoldPolicy: String, Sendable, Hashable, CaseIterable {
    /// Fire only at the first occurrence of a repeated local time.
    case once
    /// Fire at both occurrences of a repeated local time.
    case twice
}
