-- Members and expected performers of each arm of one goal's engaged buckets.
--
-- Grain: one row per bucket and arm ('test' or 'control') that control_groups assigns; no
-- rows when nothing of the goal is engaged.
-- Inputs: predictions, control_groups (empty when nothing is engaged).
-- Parameters: $goal_id.
--
-- Columns: bucket; arm; users: members; expected: sum of the members' predicted probabilities.
--
-- The members of a bucket that no arm lists are the bucket's members minus its arm rows, which
-- the nightly job counts in its pass over the predictions (src/nightly/activity.rs).
--
-- NOTE: sum() adds in the order the scan yields rows. With several predictions files per goal
-- that order can vary, so a rerun may rewrite goal_daily with expected performers that differ in
-- the last digit. Goal creation writes one file per goal, which reruns byte for byte.

with

scored as (
    select user_id, bucket, probability
    from predictions
    where goal_id = $goal_id
),

assigned as (
    select user_id, arm
    from control_groups
    where goal_id = $goal_id
)

select scored.bucket, assigned.arm, count(*) as users, sum(scored.probability) as expected
from assigned
inner join scored on scored.user_id = assigned.user_id
group by scored.bucket, assigned.arm
