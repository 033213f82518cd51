-- True probability that each generated user performs each event at least once in a window.
--
-- Grain: one row per (user_id, event_name) of `truth`.
-- Inputs: truth, truth_calendar (written by `goalcast generate`).
-- Parameters: $window_start, $window_end: the window [start, end), UTC timestamps inside the
-- generated days.
--
-- Events with a rate are Poisson processes whose intensity is rate_per_day times the day's
-- season_factor between active_from and active_until, so
--   p = 1 - exp(-rate_per_day * (S(end') - S(start')))
-- where start' and end' clip the window to the active span and S(t) is the seasonal exposure
-- up to t: season_days_before of t's day plus season_factor times the elapsed part of that day.
-- `App Uninstalled` has no rate: it happens at occurs_at, so p is 1 when that lies in the window.

with

truth as (
    select * from truth
),

calendar as (
    select * from truth_calendar
),

clipped as (
    select
        user_id,
        event_name,
        rate_per_day,
        occurs_at,
        greatest(active_from, cast($window_start as timestamp)) as exposed_from,
        least(active_until, cast($window_end as timestamp)) as exposed_until
    from truth
),

exposure as (
    select
        clipped.user_id,
        clipped.event_name,
        clipped.rate_per_day,
        clipped.occurs_at,
        clipped.exposed_until > clipped.exposed_from as is_exposed,
        from_day.season_days_before
            + from_day.season_factor
            * (extract(epoch from clipped.exposed_from)
                - extract(epoch from date_trunc('day', clipped.exposed_from))) / 86400.0
            as exposure_from,
        until_day.season_days_before
            + until_day.season_factor
            * (extract(epoch from clipped.exposed_until)
                - extract(epoch from date_trunc('day', clipped.exposed_until))) / 86400.0
            as exposure_until
    from clipped
    left join calendar as from_day
        on from_day.day = cast(clipped.exposed_from as date)
    left join calendar as until_day
        on until_day.day = cast(clipped.exposed_until as date)
),

probabilities as (
    select
        user_id,
        event_name,
        case
            when rate_per_day is null then
                case
                    when occurs_at >= cast($window_start as timestamp)
                        and occurs_at < cast($window_end as timestamp) then 1.0
                    else 0.0
                end
            when not is_exposed then 0.0
            else 1.0 - exp(-rate_per_day * (exposure_until - exposure_from))
        end as probability
    from exposure
)

select * from probabilities
